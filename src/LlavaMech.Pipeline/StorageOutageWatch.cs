namespace LlavaMech.Pipeline;

/// <summary>
/// A running job's view of an output storage outage (<see cref="StorageOutage"/>): since when the storage fails, how
/// often, and until when leasing pauses. Plain state without a clock (every call takes the time); <see cref="JobGrain"/>
/// calls it only in its own turns.
/// </summary>
/// <param name="waitSeconds">how long the job waits for its storage (<see cref="JobOptions.StorageWaitSeconds"/>).</param>
public sealed class StorageOutageWatch(double waitSeconds)
{
    private DateTimeOffset? _since, _pausedUntil;
    private string? _error, _endpoint;
    private int _tries;

    public double WaitSeconds { get; } = waitSeconds >= 0 ? waitSeconds : throw new ArgumentOutOfRangeException(nameof(waitSeconds), waitSeconds, "the storage wait must be >= 0 s");

    /// <summary>Failures since the last success (0: no outage).</summary>
    public int Tries => _tries;

    /// <summary>How long the storage has failed at <paramref name="now"/> (zero: no outage).</summary>
    public TimeSpan Waited(DateTimeOffset now) => _since is { } since ? now - since : TimeSpan.Zero;

    /// <summary>Whether leasing pauses at <paramref name="now"/>.</summary>
    public bool IsPaused(DateTimeOffset now) => _pausedUntil is { } until && now < until;

    /// <summary>
    /// Records a failure to reach <paramref name="endpoint"/>: leasing pauses for the backoff of this many tries
    /// (<paramref name="pause"/>), or, once the storage wait is spent, the outage is over and the job's error is returned.
    /// </summary>
    public string? Note(string endpoint, string error, DateTimeOffset now, out TimeSpan pause)
    {
        _since ??= now;
        _tries++;
        _endpoint = endpoint;
        _error = error;
        var waited = now - _since.Value;
        if (waited.TotalSeconds >= WaitSeconds)
        {
            pause = TimeSpan.Zero;
            string message = StorageOutage.GiveUpMessage(endpoint, waited, _tries, WaitSeconds, error);
            Clear();
            return message;
        }
        var remaining = TimeSpan.FromSeconds(WaitSeconds) - waited;
        var backoff = StorageOutage.Pause(_tries);
        pause = backoff < remaining ? backoff : remaining;
        _pausedUntil = now + pause;
        return null;
    }

    /// <summary>
    /// The job's error when the storage wait is spent at <paramref name="now"/> (the outage is then over), else null:
    /// checked on every status poll and lease request, not only when the next storage request fails, whose own
    /// retries would add their time to the wait.
    /// </summary>
    public string? GiveUpIfSpent(DateTimeOffset now)
    {
        if (_since is not { } since || _endpoint is not { } endpoint) return null;
        var waited = now - since;
        if (waited.TotalSeconds < WaitSeconds) return null;
        string message = StorageOutage.GiveUpMessage(endpoint, waited, _tries, WaitSeconds, _error ?? "unreachable");
        Clear();
        return message;
    }

    /// <summary>The job's notice during an outage, else null.</summary>
    public string? Notice(DateTimeOffset now) =>
        _since is { } since && _endpoint is { } endpoint
            ? StorageOutage.PausedNotice(endpoint, now - since, _tries, _pausedUntil - now, WaitSeconds)
            : null;

    /// <summary>The storage answered (a commit went through) or the job stopped: no outage.</summary>
    public void Clear()
    {
        _error = null;
        _since = null;
        _pausedUntil = null;
        _tries = 0;
        _endpoint = null;
    }
}
