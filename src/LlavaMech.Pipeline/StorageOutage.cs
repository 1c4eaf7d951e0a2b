using LlavaMech.Storage;

namespace LlavaMech.Pipeline;

/// <summary>
/// The job-level policy for an output storage that cannot be reached. Every storage request is already retried with
/// exponential backoff by the store (<see cref="BlobStoreOptions"/>); when an error outlasts those retries, the job
/// pauses (no new leases, a growing pause between tries), tries again, and after
/// <see cref="JobOptions.StorageWaitSeconds"/> of failures with no success in between it fails with a message that
/// names the endpoint (never a credential: <see cref="StorageException"/> messages are redacted) and the last cause.
/// Committed shards are untouched by all of this: the commit protocol never exposes a shard that is not committed.
/// </summary>
public static class StorageOutage
{
    /// <summary>The transient storage error in <paramref name="e"/>'s chain (the store gave up on an unreachable or failing endpoint), or null.</summary>
    public static StorageException? Find(Exception? e)
    {
        for (int depth = 0; e is not null && depth < 16; depth++)
        {
            if (e is StorageException { IsTransient: true } s) return s;
            if (e is AggregateException { InnerExceptions.Count: > 0 } a)
            {
                foreach (var inner in a.InnerExceptions)
                    if (Find(inner) is { } found) return found;
                return null;
            }
            e = e.InnerException;
        }
        return null;
    }

    /// <summary>The pause after the <paramref name="failures"/>-th failure: 1, 2, 4, ... s, at most 30 s.</summary>
    public static TimeSpan Pause(int failures) => TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, Math.Max(0, failures - 1))));

    /// <summary>The job's error when it gives up.</summary>
    public static string GiveUpMessage(string endpoint, TimeSpan waited, int tries, double waitSeconds, string lastError) =>
        Redaction.Redact(
            $"output storage {endpoint} is unreachable: gave up after {tries} {(tries == 1 ? "try" : "tries")} over {waited.TotalSeconds:0} s " +
            $"(each request retried with backoff; the job waits up to {waitSeconds:0} s for its storage). Last error: {lastError.TrimEnd('.')}. " +
            "Committed shards are intact: submit the same job again to resume once the storage is reachable");

    /// <summary>The job's notice while it is paused.</summary>
    public static string PausedNotice(string endpoint, TimeSpan waited, int tries, TimeSpan? resumeIn, double giveUpAfterSeconds) =>
        Redaction.Redact(
            $"paused: output storage {endpoint} unreachable for {waited.TotalSeconds:0} s ({tries} {(tries == 1 ? "try" : "tries")}); " +
            (resumeIn is { } r && r > TimeSpan.Zero ? $"retrying in {Math.Ceiling(r.TotalSeconds):0} s" : "retrying") +
            $", giving up after {giveUpAfterSeconds:0} s");
}
