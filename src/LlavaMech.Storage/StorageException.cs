using System.Text.RegularExpressions;

namespace LlavaMech.Storage;

/// <summary>
/// A storage operation failed for good (after retries where the error was transient). The message names the endpoint
/// (for blob storage the container URL without query string) and never a credential: account keys, SAS signatures
/// and connection strings are redacted from this message and from every inner exception's message.
/// </summary>
public class StorageException : Exception
{
    public StorageException(string message, string endpoint, Exception? inner = null, int attempts = 1, bool transient = false)
        : base(Redaction.Redact(message), inner is null ? null : Redaction.Sanitize(inner))
    {
        Endpoint = Redaction.Redact(endpoint);
        Attempts = attempts;
        IsTransient = transient;
    }

    /// <summary>Where the store lives: a local folder or a container URL (no credentials).</summary>
    public string Endpoint { get; }

    /// <summary>How many tries were made (1 when the error was not retried).</summary>
    public int Attempts { get; }

    /// <summary>True when the last error was of a transient kind (timeout, 5xx, connection refused) that outlasted the retries.</summary>
    public bool IsTransient { get; }
}

/// <summary>A committed shard's part file is missing and cannot be restored from its staging copy.</summary>
public sealed class CommitIntegrityException(string message, string endpoint) : StorageException(message, endpoint);

/// <summary>Removes credentials from text that may end up in messages or logs.</summary>
public static class Redaction
{
    private static readonly Regex KeyValueSecret = new(
        @"(?<k>\b(?:AccountKey|SharedAccessSignature|SharedAccessKey|AccessKey|ClientSecret|Password|Pwd)\s*=\s*)(?<v>[^;\s""']+)",
        RegexOptions.IgnoreCase | RegexOptions.Compiled);

    private static readonly Regex SasSignature = new(@"(?<k>[?&]sig=)(?<v>[^&\s""']+)", RegexOptions.IgnoreCase | RegexOptions.Compiled);

    private static readonly Regex Bearer = new(@"(?<k>\bBearer\s+)(?<v>[A-Za-z0-9\-._~+/]+=*)", RegexOptions.Compiled);

    private static readonly Regex SharedKeyAuth = new(@"(?<k>\bSharedKey(?:Lite)?\s+[^:\s]+:)(?<v>[A-Za-z0-9+/=]+)", RegexOptions.Compiled);

    private static readonly object Gate = new();
    private static string[] _secrets = [];

    /// <summary>Registers a literal secret (e.g. an account key) so that every later <see cref="Redact"/> removes it wherever it appears.</summary>
    public static void RegisterSecret(string? secret)
    {
        if (string.IsNullOrEmpty(secret) || secret.Length < 8) return;
        lock (Gate)
        {
            if (!_secrets.Contains(secret)) _secrets = [.. _secrets, secret];
        }
    }

    /// <summary>The text with account keys, SAS signatures, bearer tokens and registered secrets replaced by "***".</summary>
    public static string Redact(string? text)
    {
        if (string.IsNullOrEmpty(text)) return text ?? "";
        foreach (var s in _secrets)
            text = text.Replace(s, "***", StringComparison.Ordinal);
        text = KeyValueSecret.Replace(text, "${k}***");
        text = SasSignature.Replace(text, "${k}***");
        text = Bearer.Replace(text, "${k}***");
        text = SharedKeyAuth.Replace(text, "${k}***");
        return text;
    }

    /// <summary>A copy of the exception chain whose messages are redacted (type names and stack traces kept as text).</summary>
    public static Exception Sanitize(Exception e)
    {
        if (e is StorageException) return e;   // built from redacted text already
        if (e is AggregateException agg && agg.InnerExceptions.Count > 0)
        {
            var inner = agg.InnerExceptions.Select(Sanitize).ToArray();
            return new RedactedException(agg.GetType().FullName!, Redact(agg.Message), agg.StackTrace, inner[^1], inner.Length);
        }
        return new RedactedException(e.GetType().FullName!, Redact(e.Message), e.StackTrace,
            e.InnerException is null ? null : Sanitize(e.InnerException), 1);
    }
}

/// <summary>Stands in for an exception whose message was redacted; <see cref="OriginalType"/> names the original type.</summary>
public sealed class RedactedException : Exception
{
    private readonly string? _stack;

    internal RedactedException(string originalType, string message, string? stack, Exception? inner, int count)
        : base($"{originalType}: {message}", inner)
    {
        OriginalType = originalType;
        InnerCount = count;
        _stack = stack is null ? null : Redaction.Redact(stack);
    }

    public string OriginalType { get; }

    /// <summary>For an aggregate (e.g. the Azure SDK's "retry failed after N tries"), how many errors it held; the last is <see cref="Exception.InnerException"/>.</summary>
    public int InnerCount { get; }

    public override string? StackTrace => _stack;
}
