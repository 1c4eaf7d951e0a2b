namespace LlavaMech.Model;

/// <summary>
/// A mistake in what the user asked for (an option's value, or options that do not fit the data), as opposed to a
/// failure of the input or the machine; the command line reports it as a usage error.
/// </summary>
public sealed class InvalidOptionException(string message) : ArgumentException(message);
