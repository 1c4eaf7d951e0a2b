namespace LlavaMech.Pipeline;

/// <summary>
/// Examples per second of a job over a sliding window of shard completions, and the time left at that rate. Plain
/// state without a clock (every call takes the time); <see cref="JobGrain"/> calls it only in its own turns.
/// </summary>
public sealed class CompletionRate(TimeSpan window)
{
    private readonly Queue<(DateTimeOffset At, int Examples)> _completions = new();

    public TimeSpan Window { get; } = window > TimeSpan.Zero ? window : throw new ArgumentOutOfRangeException(nameof(window), window, "the window must be positive");

    /// <summary>A shard of <paramref name="examples"/> examples completed at <paramref name="at"/>.</summary>
    public void Record(DateTimeOffset at, int examples) => _completions.Enqueue((at, examples));

    public void Clear() => _completions.Clear();

    /// <summary>
    /// Examples per second over the completions of the last <see cref="Window"/>, counted from <paramref name="since"/>
    /// (the first lease) where that is later than the window's start; 0 without completions or before any lease.
    /// </summary>
    public double PerSecond(DateTimeOffset now, DateTimeOffset? since)
    {
        while (_completions.Count > 0 && now - _completions.Peek().At > Window) _completions.Dequeue();
        if (since is not { } first || _completions.Count == 0) return 0;
        var from = first > now - Window ? first : now - Window;
        return _completions.Sum(c => c.Examples) / Math.Max(1.0, (now - from).TotalSeconds);
    }
}
