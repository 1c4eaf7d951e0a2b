using Microsoft.Extensions.Logging;

namespace LlavaMech.Pipeline;

/// <summary>
/// The persisted part of a job: its spec and outcome. Shard states are not persisted: the commit manifests in the
/// output are the truth about which shards are done, so a job grain that moves to another silo rebuilds its shards
/// from the manifest and the output (leases of the old activation simply expire; their shards run again, and a
/// retried shard that loses the commit race discards its output).
/// </summary>
[GenerateSerializer]
public sealed class JobRecord
{
    [Id(0)] public JobSpec? Spec { get; set; }
    [Id(1)] public JobState State { get; set; }
    [Id(2)] public string? Error { get; set; }
    [Id(3)] public DateTimeOffset? SubmittedAt { get; set; }
    [Id(4)] public DateTimeOffset? FinishedAt { get; set; }
    [Id(5)] public RunSummary? Summary { get; set; }
    [Id(6)] public string? Fingerprint { get; set; }
    [Id(7)] public int ShardsTotal { get; set; }
    [Id(8)] public int ExamplesTotal { get; set; }
    [Id(9)] public int ManifestRejects { get; set; }
    [Id(10)] public int ShardsSkipped { get; set; }
}

/// <summary>See <see cref="IJobGrain"/>. Leases are checked lazily: every call first expires overdue leases.</summary>
public sealed class JobGrain : Grain, IJobGrain
{
    /// <summary>How long <see cref="SubmitAsync"/> waits for preparation before it answers "preparing".</summary>
    internal static TimeSpan PrepareWait { get; set; } = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan RateWindow = TimeSpan.FromSeconds(60);

    private readonly IPersistentState<JobRecord> _record;
    private readonly ILogger<JobGrain> _log;
    private readonly LlavaMech.Storage.ObjectStores _stores;
    private Task<JobPlan>? _prepare;
    private CancellationTokenSource? _prepareCancel;
    private Slot[]? _shards;
    private Slot? _finalize;
    private readonly Queue<(DateTimeOffset At, int Examples)> _completions = new();
    private DateTimeOffset? _firstLeaseAt;
    private int _runtimeRejects, _attempts;

    // Output storage outage (see StorageOutage): since when the storage fails, how often, and until when leasing pauses.
    private DateTimeOffset? _outageSince, _pausedUntil;
    private string? _outageError;
    private int _outageTries;
    private string? _outageEndpoint;
    private volatile string? _prepareNotice;   // written by the preparation task while it waits for the storage

    private enum SlotState { Pending, Running, Done, Failed }

    private sealed class Slot(PlannedShard shard)
    {
        public PlannedShard Shard { get; } = shard;
        public SlotState State { get; set; }
        public string? LeaseId { get; set; }
        public string? Owner { get; set; }
        public DateTimeOffset ExpiresAt { get; set; }
        public int Attempts { get; set; }
        public string? LastError { get; set; }
    }

    public JobGrain([PersistentState("job", PipelineHosting.StorageName)] IPersistentState<JobRecord> record, ILogger<JobGrain> log, LlavaMech.Storage.ObjectStores stores)
    {
        _record = record;
        _log = log;
        _stores = stores;
    }

    private JobRecord R => _record.State;
    private string JobId => this.GetPrimaryKeyString();
    private static DateTimeOffset Now => DateTimeOffset.UtcNow;
    private bool Active => R.State is JobState.Preparing or JobState.Running or JobState.Finalizing;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // A job that was active when its previous activation died (silo lost, idle collection) picks up where the output is.
        if (_record.RecordExists && Active && R.Spec is not null)
        {
            _log.LogInformation("job {Job}: reactivated in state {State}; rebuilding shards from the manifest and the output", JobId, R.State);
            StartPreparation();
        }
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _prepareCancel?.Cancel();
        return Task.CompletedTask;
    }

    public async Task<JobStatus> SubmitAsync(JobSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate();
        if (spec.JobId != JobId) throw new ArgumentException($"spec of run '{spec.RunId}' sent to job '{JobId}'");
        await IntegrateAsync();
        if (Active)
        {
            if (R.Spec == spec) return Status();
            throw new InvalidOperationException($"job '{JobId}' is {R.State.ToString().ToLowerInvariant()} with other inputs; cancel it first or use another run id");
        }

        _record.State = new JobRecord { Spec = spec, State = JobState.Preparing, SubmittedAt = Now };
        _shards = null;
        _finalize = null;
        _completions.Clear();
        _firstLeaseAt = null;
        _runtimeRejects = 0;
        _attempts = 0;
        ClearOutage();
        await _record.WriteStateAsync();
        await Registry.RegisterAsync(JobId, true);
        _log.LogInformation("job {Job}: submitted ({Model} over {Manifest} into {Output})", JobId, spec.ModelDir, spec.ManifestPath, spec.Output);
        StartPreparation();
        await Task.WhenAny(_prepare!, Task.Delay(PrepareWait));
        await IntegrateAsync();
        return Status();
    }

    public async Task<JobStatus> GetStatusAsync()
    {
        await IntegrateAsync();
        await GiveUpIfStorageWaitSpentAsync();
        if (!_record.RecordExists && R.Spec is null) return JobStatus.Unknown(JobId);
        ExpireLeases();
        // Keep the registry honest (it may have lost its state with a silo when its storage is not shared).
        if (Active && Now - _lastRegistered > TimeSpan.FromSeconds(30))
        {
            _lastRegistered = Now;
            await Registry.RegisterAsync(JobId, true);
        }
        return Status();
    }

    private DateTimeOffset _lastRegistered = DateTimeOffset.UtcNow;

    public async Task<JobStatus> CancelAsync(string reason)
    {
        await IntegrateAsync();
        if (Active)
        {
            _prepareCancel?.Cancel();
            _prepare = null;
            R.State = JobState.Cancelled;
            R.Error = string.IsNullOrWhiteSpace(reason) ? "cancelled" : reason;
            R.FinishedAt = Now;
            if (_shards is not null)
                foreach (var s in _shards.Where(s => s.State == SlotState.Running))
                {
                    s.State = SlotState.Pending;
                    s.LeaseId = null;
                }
            _finalize = null;
            ClearOutage();
            await _record.WriteStateAsync();
            await Registry.RegisterAsync(JobId, false);
            _log.LogInformation("job {Job}: cancelled ({Reason})", JobId, R.Error);
        }
        return Status();
    }

    public async Task<WorkLease?> AcquireAsync(string workerId)
    {
        await IntegrateAsync();
        await GiveUpIfStorageWaitSpentAsync();
        if (R.State is not (JobState.Running or JobState.Finalizing) || _shards is null) return null;
        ExpireLeases();
        var now = Now;
        var lease = TimeSpan.FromSeconds(R.Spec!.Options.LeaseSeconds);
        if (_pausedUntil is { } paused && now < paused) return null;   // output storage unreachable: wait before trying again
        var next = _shards.FirstOrDefault(s => s.State == SlotState.Pending);
        if (next is not null)
        {
            next.State = SlotState.Running;
            next.LeaseId = Guid.NewGuid().ToString("N");
            next.Owner = workerId;
            next.ExpiresAt = now + lease;
            _firstLeaseAt ??= now;
            return new WorkLease(JobId, next.LeaseId, WorkKind.Shard, next.Shard.Index, next.Attempts + 1, next.ExpiresAt, R.Spec, R.Fingerprint!,
                next.Shard.Examples, next.Shard.Rejects);
        }
        if (_shards.Any(s => s.State == SlotState.Running)) return null;

        // Every shard failed for good: nothing to aggregate, fail with the shards' errors.
        if (_shards.All(s => s.State == SlotState.Failed))
        {
            await FinishAsync(JobState.Failed, ShardFailures(), null);
            return null;
        }

        // Every shard is done (or failed for good): finalize.
        if (R.State == JobState.Running)
        {
            R.State = JobState.Finalizing;
            await _record.WriteStateAsync();
            _log.LogInformation("job {Job}: all shards finished; finalizing", JobId);
        }
        if (_finalize is { State: SlotState.Running }) return null;
        _finalize ??= new Slot(new PlannedShard(-1, [], []));
        _finalize.State = SlotState.Running;
        _finalize.LeaseId = Guid.NewGuid().ToString("N");
        _finalize.Owner = workerId;
        _finalize.ExpiresAt = now + lease;
        return new WorkLease(JobId, _finalize.LeaseId, WorkKind.Finalize, -1, _finalize.Attempts + 1, _finalize.ExpiresAt, R.Spec, R.Fingerprint!, [], []);
    }

    public async Task<LeaseRenewal> RenewAsync(string leaseId, int shard, string workerId)
    {
        await IntegrateAsync();
        if (!Active) return new LeaseRenewal(false, default, $"job is {R.State.ToString().ToLowerInvariant()}");
        var expires = Now + TimeSpan.FromSeconds(R.Spec!.Options.LeaseSeconds);
        if (_shards is null) return new LeaseRenewal(true, expires, null);   // rebuilding after a move: keep working
        ExpireLeases();
        var slot = FindLease(leaseId);
        if (slot is null)
        {
            // Unknown here: adopt it if its shard (or the finalization) is free, e.g. after this grain moved silos.
            var candidate = shard >= 0 && shard < _shards.Length ? _shards[shard]
                : shard < 0 && R.State == JobState.Finalizing && _shards.All(s => s.State is SlotState.Done or SlotState.Failed) ? (_finalize ??= new Slot(new PlannedShard(-1, [], []))) : null;
            if (candidate is not { State: SlotState.Pending })
                return new LeaseRenewal(false, default, "lease expired, or its shard is held or done by another worker");
            slot = candidate;
            slot.State = SlotState.Running;
            slot.LeaseId = leaseId;
            slot.Owner = workerId;
            _firstLeaseAt ??= Now;
        }
        slot.ExpiresAt = expires;
        return new LeaseRenewal(true, slot.ExpiresAt, null);
    }

    public async Task CompleteShardAsync(string leaseId, ShardReport report)
    {
        await IntegrateAsync();
        if (_shards is null || report.Shard < 0 || report.Shard >= _shards.Length) return;
        // The shard is committed whichever attempt reports it: done for good, even from a lease that expired meanwhile.
        var slot = _shards[report.Shard];
        if (slot.State == SlotState.Done) return;
        slot.State = SlotState.Done;
        slot.LeaseId = null;
        ClearOutage();   // a commit went through: the storage is reachable
        _runtimeRejects += report.ExamplesRejected;
        var now = Now;
        _completions.Enqueue((now, slot.Shard.Examples.Length));
        _log.LogInformation("job {Job}: shard {Shard} {Outcome} by {Worker} in {Seconds:0.0} s", JobId, report.Shard,
            report.Outcome == ShardOutcome.Committed ? "committed" : "already committed", report.Worker, report.Seconds);
    }

    public async Task FailAsync(string leaseId, string error)
    {
        await IntegrateAsync();
        var slot = FindLease(leaseId);
        if (slot is null) return;   // a stale attempt: its lease went to someone else already
        _attempts++;
        slot.Attempts++;
        slot.LastError = error;
        slot.LeaseId = null;
        int max = R.Spec!.Options.MaxAttempts;
        if (ReferenceEquals(slot, _finalize))
        {
            _log.LogWarning("job {Job}: finalization attempt {Attempt} failed: {Error}", JobId, slot.Attempts, error);
            if (slot.Attempts >= max)
                await FinishAsync(JobState.Failed, $"finalization failed {slot.Attempts} times: {error}", null);
            else slot.State = SlotState.Pending;
            return;
        }
        slot.State = slot.Attempts >= max ? SlotState.Failed : SlotState.Pending;
        _log.LogWarning("job {Job}: shard {Shard} attempt {Attempt} failed{Final}: {Error}", JobId, slot.Shard.Index, slot.Attempts,
            slot.State == SlotState.Failed ? " (giving up)" : "", error);
    }

    public async Task CompleteFinalizeAsync(string leaseId, RunSummary summary)
    {
        await IntegrateAsync();
        if (R.State != JobState.Finalizing || _shards is null) return;
        ClearOutage();
        string? error = _shards.Any(s => s.State == SlotState.Failed) ? ShardFailures() : null;
        await FinishAsync(error is null ? JobState.Completed : JobState.Failed, error, summary);
    }

    private string ShardFailures()
    {
        var failed = _shards!.Where(s => s.State == SlotState.Failed).ToList();
        int done = _shards!.Count(s => s.State == SlotState.Done);
        return $"{failed.Count} of {_shards!.Length} shards failed after {R.Spec!.Options.MaxAttempts} attempts " +
               $"({string.Join("; ", failed.Take(3).Select(s => $"shard {s.Shard.Index}: {s.LastError}"))}{(failed.Count > 3 ? "; ..." : "")}); " +
               (done > 0 ? "the other shards are committed: " : "") + "submit the same job again to retry the failed ones";
    }

    public async Task StorageUnavailableAsync(string leaseId, string endpoint, string error)
    {
        await IntegrateAsync();
        if (!Active) return;
        var slot = FindLease(leaseId);
        if (slot is not null)
        {
            // Not the shard's fault: back to the queue without counting an attempt (the storage wait bounds the retries).
            slot.State = SlotState.Pending;
            slot.LeaseId = null;
            slot.LastError = error;
        }
        await NoteOutageAsync(endpoint, error);
    }

    public async Task ReleaseAsync(string leaseId)
    {
        await IntegrateAsync();
        if (!Active) return;
        var slot = FindLease(leaseId);
        if (slot is null) return;   // expired or taken over already
        slot.State = SlotState.Pending;
        slot.LeaseId = null;
        _log.LogInformation("job {Job}: {Owner} released {What} (stopping); pending again", JobId, slot.Owner,
            ReferenceEquals(slot, _finalize) ? "the finalization" : $"shard {slot.Shard.Index}");
    }

    /// <summary>Records a failure to reach the output storage: pauses leasing, or fails the job once the storage wait is spent.</summary>
    private async Task NoteOutageAsync(string endpoint, string error)
    {
        var now = Now;
        _outageSince ??= now;
        _outageTries++;
        _outageEndpoint = endpoint;
        _outageError = error;
        var waited = now - _outageSince.Value;
        double wait = R.Spec!.Options.StorageWaitSeconds;
        if (waited.TotalSeconds >= wait)
        {
            string message = StorageOutage.GiveUpMessage(endpoint, waited, _outageTries, wait, error);
            ClearOutage();
            await FinishAsync(JobState.Failed, message, null);
            return;
        }
        var pause = StorageOutage.Pause(_outageTries);
        var remaining = TimeSpan.FromSeconds(wait) - waited;
        _pausedUntil = now + (pause < remaining ? pause : remaining);
        _log.LogWarning("job {Job}: output storage {Endpoint} unreachable ({Tries} tries in {Seconds:0} s); pausing {Pause:0.0} s: {Error}",
            JobId, endpoint, _outageTries, waited.TotalSeconds, (_pausedUntil.Value - now).TotalSeconds, error);
    }

    /// <summary>
    /// Fails the job as soon as its storage wait is spent (checked on every status poll and lease request), not when
    /// the next storage request fails: that request's own retries would add their time to the wait.
    /// </summary>
    private async Task GiveUpIfStorageWaitSpentAsync()
    {
        if (!Active || _outageSince is not { } since || _outageEndpoint is not { } endpoint) return;
        var waited = Now - since;
        double wait = R.Spec!.Options.StorageWaitSeconds;
        if (waited.TotalSeconds < wait) return;
        string message = StorageOutage.GiveUpMessage(endpoint, waited, _outageTries, wait, _outageError ?? "unreachable");
        ClearOutage();
        await FinishAsync(JobState.Failed, message, null);
    }

    private void ClearOutage()
    {
        _outageError = null;
        _outageSince = null;
        _pausedUntil = null;
        _outageTries = 0;
        _outageEndpoint = null;
    }

    private async Task FinishAsync(JobState state, string? error, RunSummary? summary)
    {
        R.State = state;
        R.Error = error;
        R.Summary = summary ?? R.Summary;
        R.FinishedAt = Now;
        _finalize = null;
        await _record.WriteStateAsync();
        await Registry.RegisterAsync(JobId, false);
        _log.LogInformation("job {Job}: {State}{Error}", JobId, state, error is null ? "" : ": " + error);
    }

    private IJobRegistryGrain Registry => GrainFactory.GetGrain<IJobRegistryGrain>(0);

    private void StartPreparation()
    {
        _prepareCancel?.Cancel();
        _prepareCancel = new CancellationTokenSource();
        var spec = R.Spec!;
        var token = _prepareCancel.Token;
        _shards = null;
        _finalize = null;
        _prepareNotice = null;
        _prepare = Task.Run(() => PrepareWithRetriesAsync(spec, n => _prepareNotice = n, token, _stores), token);
    }

    /// <summary>
    /// <see cref="JobPlan.PrepareAsync"/>, retried with the storage outage policy while the output storage is
    /// unreachable (the job stays preparing, with a notice); after the storage wait it fails with the endpoint named.
    /// </summary>
    internal static async Task<JobPlan> PrepareWithRetriesAsync(JobSpec spec, Action<string?> notice, CancellationToken ct, LlavaMech.Storage.ObjectStores? stores = null)
    {
        // The wait runs from the start of the first attempt that failed; every later attempt is cut off at its end, so
        // an attempt's own request retries cannot carry the total past the asked time.
        DateTimeOffset? since = null;
        int tries = 0;
        LlavaMech.Storage.StorageException? last = null;
        var waitFor = TimeSpan.FromSeconds(spec.Options.StorageWaitSeconds);
        while (true)
        {
            var started = DateTimeOffset.UtcNow;
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
            if (since is { } s0) attempt.CancelAfter(Max(TimeSpan.Zero, s0 + waitFor - started));
            try
            {
                var plan = await JobPlan.PrepareAsync(spec, stores, attempt.Token).ConfigureAwait(false);
                notice(null);
                return plan;
            }
            catch (Exception e) when (!ct.IsCancellationRequested && (StorageOutage.Find(e) is not null || (e is OperationCanceledException && attempt.IsCancellationRequested)))
            {
                var now = DateTimeOffset.UtcNow;
                since ??= started;
                tries++;
                var waited = now - since.Value;
                var storage = StorageOutage.Find(e);
                last = storage ?? last;
                if (waited >= waitFor || storage is null)
                    throw new JobPreparationException(StorageOutage.GiveUpMessage(last?.Endpoint ?? "of the job", waited, tries, spec.Options.StorageWaitSeconds,
                        storage?.Message ?? $"the storage wait ran out during try {tries}{(last is null ? "" : $" (before: {last.Message})")}"), (Exception?)last ?? e);
                var pause = StorageOutage.Pause(tries);
                var remaining = waitFor - waited;
                if (remaining < pause) pause = remaining;
                notice(StorageOutage.PausedNotice(storage.Endpoint, waited, tries, pause, spec.Options.StorageWaitSeconds));
                await Task.Delay(pause, ct).ConfigureAwait(false);
            }
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>Takes in a finished preparation: shards (committed ones done), or the job's failure with the reason.</summary>
    private async Task IntegrateAsync()
    {
        if (_prepare is not { IsCompleted: true } prepare) return;
        _prepare = null;
        if (!Active) return;
        if (!prepare.IsCompletedSuccessfully)
        {
            var e = prepare.Exception?.GetBaseException();
            if (e is null or OperationCanceledException) return;
            _log.LogInformation("job {Job}: cannot start: {Error}", JobId, e.Message);   // the submitter gets it as the job's error
            await FinishAsync(JobState.Failed, e.Message, null);
            return;
        }
        var plan = prepare.Result;
        _shards = plan.Shards.Select(s => new Slot(s) { State = plan.Committed.Contains(s.Index) ? SlotState.Done : SlotState.Pending }).ToArray();
        R.Fingerprint = plan.Checkpoint.Fingerprint;
        R.ShardsTotal = plan.Shards.Count;
        R.ExamplesTotal = plan.Examples;
        R.ManifestRejects = plan.ManifestRejects;
        if (R.State == JobState.Preparing)
        {
            R.ShardsSkipped = plan.Committed.Count;
            R.State = JobState.Running;
        }
        await _record.WriteStateAsync();
        _log.LogInformation("job {Job}: {Shards} shards of {Size} ({Examples} examples, {Rejects} manifest rejects), {Committed} committed already; model {Fingerprint}",
            JobId, plan.Shards.Count, R.Spec!.Options.ShardSize, plan.Examples, plan.ManifestRejects, plan.Committed.Count, plan.Checkpoint.Fingerprint[..12]);
    }

    private void ExpireLeases()
    {
        var now = Now;
        int max = R.Spec?.Options.MaxAttempts ?? 1;
        foreach (var s in (_shards ?? []).Append(_finalize))
        {
            if (s is not { State: SlotState.Running } || s.ExpiresAt > now) continue;
            _attempts++;
            s.Attempts++;
            s.LastError = $"lease of worker {s.Owner} expired (worker gone or stalled)";
            s.LeaseId = null;
            s.State = s.Attempts >= max && !ReferenceEquals(s, _finalize) ? SlotState.Failed : SlotState.Pending;
            _log.LogWarning("job {Job}: {What} lease of {Owner} expired; {Next}", JobId, ReferenceEquals(s, _finalize) ? "finalization" : $"shard {s.Shard.Index}",
                s.Owner, s.State == SlotState.Failed ? "giving up on it" : "back to the queue");
        }
    }

    private Slot? FindLease(string leaseId) =>
        _finalize?.LeaseId == leaseId && _finalize.State == SlotState.Running ? _finalize
        : _shards?.FirstOrDefault(s => s.LeaseId == leaseId && s.State == SlotState.Running);

    private JobStatus Status()
    {
        var now = Now;
        var shards = _shards ?? [];
        int done = shards.Count(s => s.State == SlotState.Done), running = shards.Count(s => s.State == SlotState.Running);
        int failed = shards.Count(s => s.State == SlotState.Failed), pending = shards.Count(s => s.State == SlotState.Pending);
        int examplesDone = shards.Where(s => s.State == SlotState.Done).Sum(s => s.Shard.Examples.Length);
        int examplesFailed = shards.Where(s => s.State == SlotState.Failed).Sum(s => s.Shard.Examples.Length);

        while (_completions.Count > 0 && now - _completions.Peek().At > RateWindow) _completions.Dequeue();
        double rate = 0;
        if (_firstLeaseAt is { } first && _completions.Count > 0)
        {
            var from = first > now - RateWindow ? first : now - RateWindow;
            rate = _completions.Sum(c => c.Examples) / Math.Max(1.0, (now - from).TotalSeconds);
        }
        int remaining = Math.Max(0, R.ExamplesTotal - examplesDone - examplesFailed);
        double? eta = R.State is JobState.Running && rate > 0 ? remaining / rate : R.State is JobState.Finalizing ? 0 : null;
        var state = Active && _shards is null ? JobState.Preparing : R.State;
        var owners = shards.Where(s => s.State == SlotState.Running).Append(_finalize).Where(s => s is { State: SlotState.Running, Owner: not null })
            .Select(s => s!.Owner!).Distinct().ToArray();
        string? notice = null;
        if (Active)
        {
            if (_outageSince is { } since && _outageEndpoint is not null)
                notice = StorageOutage.PausedNotice(_outageEndpoint, now - since, _outageTries, _pausedUntil - now, R.Spec!.Options.StorageWaitSeconds);
            else if (_shards is null)
                notice = _prepareNotice;
        }
        return new JobStatus(JobId, state, R.Error, R.ShardsTotal, done, running, failed, pending, R.ShardsSkipped, R.ExamplesTotal, examplesDone,
            R.ManifestRejects + _runtimeRejects, rate, eta, R.SubmittedAt, R.FinishedAt, R.Spec, R.Fingerprint, R.Summary, owners.Length, _attempts,
            notice, owners);
    }
}

/// <summary>Persisted list of the cluster's jobs.</summary>
[GenerateSerializer]
public sealed class RegistryRecord
{
    [Id(0)] public Dictionary<string, JobEntry> Jobs { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>See <see cref="IJobRegistryGrain"/>.</summary>
public sealed class JobRegistryGrain([PersistentState("registry", PipelineHosting.StorageName)] IPersistentState<RegistryRecord> record)
    : Grain, IJobRegistryGrain
{
    private const int KeepFinished = 200;

    public async Task RegisterAsync(string jobId, bool active)
    {
        var jobs = record.State.Jobs;
        bool known = jobs.TryGetValue(jobId, out var old);
        if (known && old!.Active == active) return;
        var submitted = known && !active ? old!.SubmittedAt : DateTimeOffset.UtcNow;
        jobs[jobId] = new JobEntry(jobId, submitted, active);
        foreach (var stale in jobs.Values.Where(j => !j.Active).OrderByDescending(j => j.SubmittedAt).Skip(KeepFinished).ToList())
            jobs.Remove(stale.JobId);
        await record.WriteStateAsync();
    }

    public Task<string[]> ActiveAsync() =>
        Task.FromResult(record.State.Jobs.Values.Where(j => j.Active).OrderBy(j => j.SubmittedAt).Select(j => j.JobId).ToArray());

    public Task<JobEntry[]> ListAsync() =>
        Task.FromResult(record.State.Jobs.Values.OrderByDescending(j => j.SubmittedAt).ToArray());
}
