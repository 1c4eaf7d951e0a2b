namespace LlavaMech.Checkpoints;

/// <summary>
/// A configuration or weight file that cannot be trusted. Messages always name the offending file
/// (and tensor, where there is one) so a user can fix the input without a debugger.
/// </summary>
public sealed class CheckpointException : Exception
{
    public CheckpointException(string message, Exception? inner = null) : base(message, inner) { }
}
