namespace LlavaMech.Pipeline;

/// <summary>
/// The shard leases of one job activation: every shard is pending, running (leased to one worker until a time),
/// done (committed, for good) or failed (out of attempts); once every shard has settled, the job's finalization is
/// leased the same way. Plain state: no Orleans, no clock (every call takes the time), no I/O. <see cref="JobGrain"/>
/// owns one and calls it only in its own turns.
/// </summary>
public sealed class LeaseTable
{
    public enum SlotState { Pending, Running, Done, Failed }

    /// <summary>One shard (or the finalization, <see cref="IsFinalization"/>) and its lease.</summary>
    public sealed class Slot(PlannedShard shard, bool finalization = false)
    {
        public PlannedShard Shard { get; } = shard;
        public bool IsFinalization { get; } = finalization;
        public SlotState State { get; internal set; }
        public string? LeaseId { get; internal set; }
        public string? Owner { get; internal set; }
        public DateTimeOffset ExpiresAt { get; internal set; }

        /// <summary>Failed or expired attempts so far; the next lease is attempt <see cref="Attempts"/> + 1.</summary>
        public int Attempts { get; internal set; }

        public string? LastError { get; internal set; }

        /// <summary>"shard N" or "finalization", for messages.</summary>
        public string What => IsFinalization ? "finalization" : $"shard {Shard.Index}";

        internal void Grant(string leaseId, string worker, DateTimeOffset expires)
        {
            State = SlotState.Running;
            LeaseId = leaseId;
            Owner = worker;
            ExpiresAt = expires;
        }

        internal void Requeue()
        {
            State = SlotState.Pending;
            LeaseId = null;
        }
    }

    /// <summary>What <see cref="Fail"/> did with the attempt.</summary>
    public enum FailOutcome
    {
        /// <summary>The lease is not held any more (expired, taken over, released): nothing changed.</summary>
        Stale,

        /// <summary>Counted; the shard (or finalization) is pending again.</summary>
        Retry,

        /// <summary>Counted, and that was the last attempt: the shard is failed for good (for the finalization: the job fails).</summary>
        GaveUp,
    }

    private readonly Slot[] _shards;
    private Slot? _finalize;
    private readonly int _maxAttempts;
    private readonly TimeSpan _lease;

    /// <param name="committed">shards committed in the output already: done from the start.</param>
    /// <param name="maxAttempts">failed or expired attempts after which a shard is failed for good.</param>
    /// <param name="lease">how long a lease lasts unless renewed.</param>
    public LeaseTable(IReadOnlyList<PlannedShard> shards, IReadOnlySet<int> committed, int maxAttempts, TimeSpan lease)
    {
        ArgumentNullException.ThrowIfNull(shards);
        ArgumentNullException.ThrowIfNull(committed);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxAttempts, 1);
        if (lease <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(lease), lease, "a lease must last a positive time");
        for (int i = 0; i < shards.Count; i++)
            if (shards[i].Index != i) throw new ArgumentException($"shard {i} has index {shards[i].Index}; shards must be numbered 0..{shards.Count - 1} in order", nameof(shards));
        _shards = shards.Select(s => new Slot(s) { State = committed.Contains(s.Index) ? SlotState.Done : SlotState.Pending }).ToArray();
        _maxAttempts = maxAttempts;
        _lease = lease;
    }

    public IReadOnlyList<Slot> Shards => _shards;

    /// <summary>The finalization's slot once it was leased (or adopted), else null.</summary>
    public Slot? Finalization => _finalize;

    /// <summary>Failed or expired attempts over every shard and the finalization.</summary>
    public int Attempts { get; private set; }

    /// <summary>Examples rejected while running, as the committed shards reported them.</summary>
    public int RuntimeRejects { get; private set; }

    /// <summary>When the first lease of this table was granted (the start of the examples/s window).</summary>
    public DateTimeOffset? FirstLeaseAt { get; private set; }

    /// <summary>No shard is pending or running: every one is done or failed for good.</summary>
    public bool AllSettled => _shards.All(s => s.State is SlotState.Done or SlotState.Failed);

    /// <summary>Every shard failed for good (nothing to finalize). False for a job of no shards.</summary>
    public bool AllFailed => _shards.Length > 0 && _shards.All(s => s.State == SlotState.Failed);

    public bool AnyFailed => _shards.Any(s => s.State == SlotState.Failed);

    public bool AnyRunning => _shards.Any(s => s.State == SlotState.Running);

    /// <summary>
    /// Ends every lease that is past its time: the attempt counts, and the shard is pending again or, on its last
    /// attempt, failed for good (the finalization is always pending again: the job fails on reported errors only).
    /// Returns the slots it expired.
    /// </summary>
    public IReadOnlyList<Slot> Expire(DateTimeOffset now)
    {
        var expired = new List<Slot>();
        foreach (var s in _finalize is null ? _shards : _shards.Append(_finalize))
        {
            if (s.State != SlotState.Running || s.ExpiresAt > now) continue;
            Attempts++;
            s.Attempts++;
            s.LastError = $"lease of worker {s.Owner} expired (worker gone or stalled)";
            s.Requeue();
            if (s.Attempts >= _maxAttempts && !s.IsFinalization) s.State = SlotState.Failed;
            expired.Add(s);
        }
        return expired;
    }

    /// <summary>Leases the first pending shard to <paramref name="worker"/>, or returns null when none is pending.</summary>
    public Slot? LeaseShard(string worker, DateTimeOffset now)
    {
        var next = _shards.FirstOrDefault(s => s.State == SlotState.Pending);
        if (next is null) return null;
        next.Grant(NewLeaseId(), worker, now + _lease);
        FirstLeaseAt ??= now;
        return next;
    }

    /// <summary>
    /// Leases the finalization to <paramref name="worker"/> once every shard has settled; null while a shard is still
    /// pending or running, or while the finalization is leased to someone.
    /// </summary>
    public Slot? LeaseFinalization(string worker, DateTimeOffset now)
    {
        if (!AllSettled || _finalize is { State: SlotState.Running }) return null;
        _finalize ??= NewFinalization();
        _finalize.Grant(NewLeaseId(), worker, now + _lease);
        return _finalize;
    }

    /// <summary>
    /// Extends lease <paramref name="leaseId"/> to <paramref name="now"/> + the lease time and returns the new expiry, or
    /// null when the lease is lost. A lease this table does not know (its job moved to another activation) is adopted
    /// when its shard (<paramref name="shard"/> &lt; 0: the finalization, with <paramref name="finalizing"/>) is pending.
    /// </summary>
    public DateTimeOffset? Renew(string leaseId, int shard, string worker, DateTimeOffset now, bool finalizing)
    {
        var slot = Find(leaseId);
        if (slot is null)
        {
            var candidate = shard >= 0 && shard < _shards.Length ? _shards[shard]
                : shard < 0 && finalizing && AllSettled ? (_finalize ??= NewFinalization()) : null;
            if (candidate is not { State: SlotState.Pending }) return null;
            slot = candidate;
            slot.Grant(leaseId, worker, now);
            FirstLeaseAt ??= now;
        }
        slot.ExpiresAt = now + _lease;
        return slot.ExpiresAt;
    }

    /// <summary>
    /// Shard <paramref name="shard"/> is committed, whichever attempt reports it (even one whose lease expired
    /// meanwhile): done for good. Returns true the first time, false when it was done already or is out of range.
    /// </summary>
    public bool Complete(int shard, int examplesRejected)
    {
        if (shard < 0 || shard >= _shards.Length) return false;
        var slot = _shards[shard];
        if (slot.State == SlotState.Done) return false;
        slot.State = SlotState.Done;
        slot.LeaseId = null;
        RuntimeRejects += examplesRejected;
        return true;
    }

    /// <summary>The attempt of <paramref name="leaseId"/> failed with <paramref name="error"/>: see <see cref="FailOutcome"/>.</summary>
    public FailOutcome Fail(string leaseId, string error, out Slot? slot)
    {
        slot = Find(leaseId);
        if (slot is null) return FailOutcome.Stale;
        Attempts++;
        slot.Attempts++;
        slot.LastError = error;
        slot.Requeue();
        if (slot.Attempts < _maxAttempts) return FailOutcome.Retry;
        if (!slot.IsFinalization) slot.State = SlotState.Failed;
        return FailOutcome.GaveUp;
    }

    /// <summary>
    /// The lease's work goes back to the queue without counting an attempt (its worker stops, or the storage failed,
    /// not the shard); <paramref name="error"/>, when given, is kept as the last error. Returns the slot, or null when
    /// the lease is not held any more.
    /// </summary>
    public Slot? Requeue(string leaseId, string? error = null)
    {
        var slot = Find(leaseId);
        if (slot is null) return null;
        slot.Requeue();
        if (error is not null) slot.LastError = error;
        return slot;
    }

    /// <summary>Every running shard is pending again and the finalization is forgotten (the job was cancelled).</summary>
    public void DropLeases()
    {
        foreach (var s in _shards.Where(s => s.State == SlotState.Running)) s.Requeue();
        ForgetFinalization();
    }

    /// <summary>The finalization's lease and attempts are forgotten (the job ended).</summary>
    public void ForgetFinalization() => _finalize = null;

    /// <summary>Why the failed shards failed: counts and the first errors, for the job's error.</summary>
    public string FailureSummary()
    {
        var failed = _shards.Where(s => s.State == SlotState.Failed).ToList();
        int done = _shards.Count(s => s.State == SlotState.Done);
        return $"{failed.Count} of {_shards.Length} shards failed after {_maxAttempts} attempts " +
               $"({string.Join("; ", failed.Take(3).Select(s => $"shard {s.Shard.Index}: {s.LastError}"))}{(failed.Count > 3 ? "; ..." : "")}); " +
               (done > 0 ? "the other shards are committed: " : "") + "submit the same job again to retry the failed ones";
    }

    /// <summary>Shards per state, the examples of done and failed shards, and the workers holding a lease now.</summary>
    public (int Done, int Running, int Failed, int Pending, int ExamplesDone, int ExamplesFailed, string[] Owners) Counts()
    {
        int done = 0, running = 0, failed = 0, pending = 0, examplesDone = 0, examplesFailed = 0;
        foreach (var s in _shards)
            switch (s.State)
            {
                case SlotState.Done: done++; examplesDone += s.Shard.Examples.Length; break;
                case SlotState.Failed: failed++; examplesFailed += s.Shard.Examples.Length; break;
                case SlotState.Running: running++; break;
                default: pending++; break;
            }
        var owners = (_finalize is null ? _shards : _shards.Append(_finalize))
            .Where(s => s is { State: SlotState.Running, Owner: not null }).Select(s => s.Owner!).Distinct().ToArray();
        return (done, running, failed, pending, examplesDone, examplesFailed, owners);
    }

    private Slot? Find(string leaseId) =>
        _finalize is { State: SlotState.Running } f && f.LeaseId == leaseId ? f
        : _shards.FirstOrDefault(s => s.State == SlotState.Running && s.LeaseId == leaseId);

    private static Slot NewFinalization() => new(new PlannedShard(-1, [], []), finalization: true);

    private static string NewLeaseId() => Guid.NewGuid().ToString("N");
}
