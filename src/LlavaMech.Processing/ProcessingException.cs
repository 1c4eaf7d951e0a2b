namespace LlavaMech.Processing;

/// <summary>
/// A tokenizer, prompt or image could not be processed. The message names the file (or model folder)
/// and says what is wrong with it, so it can be shown to a user as is.
/// </summary>
public sealed class ProcessingException : Exception
{
    public ProcessingException(string message) : base(message) { }

    public ProcessingException(string message, Exception innerException) : base(message, innerException) { }
}
