using LlavaMech.Storage;
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

/// <summary>
/// See <see cref="IJobGrain"/>. The grain coordinates: it owns the job's record and calls its parts, each plain state
/// changed only in the grain's turns: <see cref="JobPreparation"/> (the plan, prepared off the grain's turns and taken
/// in by a call on the grain itself), <see cref="LeaseTable"/> (shard and finalization leases), <see cref="CompletionRate"/>
/// (progress) and <see cref="StorageOutageWatch"/> (the output storage wait). Leases are checked lazily: every call
/// first expires overdue leases.
/// </summary>
public sealed class JobGrain : Grain, IJobGrain
{
    private static readonly TimeSpan RateWindow = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan RegistryRefresh = TimeSpan.FromSeconds(30);

    private readonly IPersistentState<JobRecord> _record;
    private readonly ILogger<JobGrain> _log;
    private readonly ObjectStores _stores;
    private JobPreparation? _preparation;
    private CancellationTokenSource? _prepareCancel;
    private LeaseTable? _leases;
    private readonly CompletionRate _rate = new(RateWindow);
    private StorageOutageWatch? _outage;
    private DateTimeOffset _lastRegistered = DateTimeOffset.UtcNow;
    private readonly PathRoots _roots;

    public JobGrain([PersistentState("job", PipelineHosting.StorageName)] IPersistentState<JobRecord> record, ILogger<JobGrain> log, ObjectStores stores,
        PipelineSiloOptions silo)
    {
        _record = record;
        _log = log;
        _stores = stores;
        _roots = silo.Roots;
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
            _outage = new StorageOutageWatch(R.Spec.Options.StorageWaitSeconds);
            StartPreparation();
        }
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _prepareCancel?.Cancel();
        return Task.CompletedTask;
    }

    /// <summary>Records the job as preparing and starts its preparation; answers at once (the client waits for the outcome).</summary>
    public async Task<JobStatus> SubmitAsync(JobSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate();
        if (spec.JobId != JobId) throw new ArgumentException($"spec of run '{spec.RunId}' sent to job '{JobId}'");
        // Before anything is read or recorded: the job's paths must stay inside this silo's roots. Resolving links touches
        // the file system, so it runs off the grain's scheduler (a slow mount must not stall other grains).
        await Task.Run(() => _roots.Check(spec));
        await IntegrateAsync();
        if (Active)
        {
            if (R.Spec == spec) return Status();
            throw new InvalidOperationException($"job '{JobId}' is {R.State.ToString().ToLowerInvariant()} with other inputs; cancel it first or use another run id");
        }

        _record.State = new JobRecord { Spec = spec, State = JobState.Preparing, SubmittedAt = Now };
        _rate.Clear();
        _outage = new StorageOutageWatch(spec.Options.StorageWaitSeconds);
        StopPreparation();
        _leases = null;
        await _record.WriteStateAsync();
        await Registry.RegisterAsync(JobId, true);
        _log.LogInformation("job {Job}: submitted ({Model} over {Manifest} into {Output})", JobId, spec.ModelDir, spec.ManifestPath, spec.Output);
        StartPreparation();
        return Status();
    }

    public Task PreparedAsync() => IntegrateAsync();

    public async Task<JobStatus> GetStatusAsync()
    {
        await IntegrateAsync();
        await GiveUpIfStorageWaitSpentAsync();
        if (!_record.RecordExists && R.Spec is null) return JobStatus.Unknown(JobId);
        ExpireLeases();
        // Keep the registry honest (it may have lost its state with a silo when its storage is not shared).
        if (Active && Now - _lastRegistered > RegistryRefresh)
        {
            _lastRegistered = Now;
            await Registry.RegisterAsync(JobId, true);
        }
        return Status();
    }

    public async Task<JobStatus> CancelAsync(string reason)
    {
        await IntegrateAsync();
        if (Active)
        {
            StopPreparation();
            R.State = JobState.Cancelled;
            R.Error = string.IsNullOrWhiteSpace(reason) ? "cancelled" : reason;
            R.FinishedAt = Now;
            _leases?.DropLeases();
            _outage?.Clear();
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
        if (R.State is not (JobState.Running or JobState.Finalizing) || _leases is not { } leases) return null;
        ExpireLeases();
        var now = Now;
        if (_outage?.IsPaused(now) == true) return null;   // output storage unreachable: wait before trying again
        if (leases.LeaseShard(workerId, now) is { } shard)
            return new WorkLease(JobId, shard.LeaseId!, WorkKind.Shard, shard.Shard.Index, shard.Attempts + 1, shard.ExpiresAt, R.Spec!, R.Fingerprint!,
                shard.Shard.Examples, shard.Shard.Rejects);
        if (leases.AnyRunning) return null;

        // Every shard failed for good: nothing to aggregate, fail with the shards' errors.
        if (leases.AllFailed)
        {
            await FinishAsync(JobState.Failed, leases.FailureSummary(), null);
            return null;
        }

        // Every shard is done (or failed for good): finalize.
        if (R.State == JobState.Running)
        {
            R.State = JobState.Finalizing;
            await _record.WriteStateAsync();
            _log.LogInformation("job {Job}: all shards finished; finalizing", JobId);
        }
        if (leases.LeaseFinalization(workerId, now) is not { } final) return null;
        return new WorkLease(JobId, final.LeaseId!, WorkKind.Finalize, -1, final.Attempts + 1, final.ExpiresAt, R.Spec!, R.Fingerprint!, [], []);
    }

    public async Task<LeaseRenewal> RenewAsync(string leaseId, int shard, string workerId)
    {
        await IntegrateAsync();
        if (!Active) return new LeaseRenewal(false, default, $"job is {R.State.ToString().ToLowerInvariant()}");
        var now = Now;
        if (_leases is null) return new LeaseRenewal(true, now + TimeSpan.FromSeconds(R.Spec!.Options.LeaseSeconds), null);   // rebuilding after a move: keep working
        ExpireLeases();
        return _leases.Renew(leaseId, shard, workerId, now, R.State == JobState.Finalizing) is { } expires
            ? new LeaseRenewal(true, expires, null)
            : new LeaseRenewal(false, default, "lease expired, or its shard is held or done by another worker");
    }

    public async Task CompleteShardAsync(string leaseId, ShardReport report)
    {
        await IntegrateAsync();
        // The shard is committed whichever attempt reports it: done for good, even from a lease that expired meanwhile.
        if (_leases is null || !_leases.Complete(report.Shard, report.ExamplesRejected)) return;
        _outage?.Clear();   // a commit went through: the storage is reachable
        _rate.Record(Now, _leases.Shards[report.Shard].Shard.Examples.Length);
        _log.LogInformation("job {Job}: shard {Shard} {Outcome} by {Worker} in {Seconds:0.0} s", JobId, report.Shard,
            report.Outcome == ShardOutcome.Committed ? "committed" : "already committed", report.Worker, report.Seconds);
    }

    public async Task FailAsync(string leaseId, string error)
    {
        await IntegrateAsync();
        if (_leases is null) return;
        var outcome = _leases.Fail(leaseId, error, out var slot);
        if (outcome == LeaseTable.FailOutcome.Stale) return;   // a stale attempt: its lease went to someone else already
        if (slot!.IsFinalization)
        {
            _log.LogWarning("job {Job}: finalization attempt {Attempt} failed: {Error}", JobId, slot.Attempts, error);
            if (outcome == LeaseTable.FailOutcome.GaveUp)
                await FinishAsync(JobState.Failed, $"finalization failed {slot.Attempts} times: {error}", null);
            return;
        }
        _log.LogWarning("job {Job}: shard {Shard} attempt {Attempt} failed{Final}: {Error}", JobId, slot.Shard.Index, slot.Attempts,
            outcome == LeaseTable.FailOutcome.GaveUp ? " (giving up)" : "", error);
    }

    public async Task CompleteFinalizeAsync(string leaseId, RunSummary summary)
    {
        await IntegrateAsync();
        if (R.State != JobState.Finalizing || _leases is null) return;
        _outage?.Clear();
        string? error = _leases.AnyFailed ? _leases.FailureSummary()
            // Nothing analysed is not a success, whatever was written: the rejects table says why each line was refused.
            : summary.Examples == 0 ? $"no usable line: all {summary.Rejects} lines of the manifest were rejected (reasons in the rejects table)"
            : null;
        await FinishAsync(error is null ? JobState.Completed : JobState.Failed, error, summary);
    }

    public async Task StorageUnavailableAsync(string leaseId, string endpoint, string error)
    {
        await IntegrateAsync();
        if (!Active || _outage is null) return;
        // Not the shard's fault: back to the queue without counting an attempt (the storage wait bounds the retries).
        _leases?.Requeue(leaseId, error);
        var now = Now;
        if (_outage.Note(endpoint, error, now, out var pause) is { } giveUp)
        {
            await FinishAsync(JobState.Failed, giveUp, null);
            return;
        }
        _log.LogWarning("job {Job}: output storage {Endpoint} unreachable ({Tries} tries in {Seconds:0} s); pausing {Pause:0.0} s: {Error}",
            JobId, endpoint, _outage.Tries, _outage.Waited(now).TotalSeconds, pause.TotalSeconds, error);
    }

    public async Task ReleaseAsync(string leaseId)
    {
        await IntegrateAsync();
        if (!Active || _leases?.Requeue(leaseId) is not { } slot) return;   // expired or taken over already
        _log.LogInformation("job {Job}: {Owner} released {What} (stopping); pending again", JobId, slot.Owner,
            slot.IsFinalization ? "the finalization" : slot.What);
    }

    /// <summary>Fails the job as soon as its storage wait is spent (see <see cref="StorageOutageWatch.GiveUpIfSpent"/>).</summary>
    private async Task GiveUpIfStorageWaitSpentAsync()
    {
        if (Active && _outage?.GiveUpIfSpent(Now) is { } message)
            await FinishAsync(JobState.Failed, message, null);
    }

    private async Task FinishAsync(JobState state, string? error, RunSummary? summary)
    {
        R.State = state;
        R.Error = error;
        R.Summary = summary ?? R.Summary;
        R.FinishedAt = Now;
        _leases?.ForgetFinalization();
        _outage?.Clear();
        await _record.WriteStateAsync();
        await Registry.RegisterAsync(JobId, false);
        _log.LogInformation("job {Job}: {State}{Error}", JobId, state, error is null ? "" : ": " + error);
    }

    private IJobRegistryGrain Registry => GrainFactory.GetGrain<IJobRegistryGrain>(0);

    /// <summary>Starts preparing the job's spec off the grain's turns; its end comes back as <see cref="PreparedAsync"/>.</summary>
    private void StartPreparation()
    {
        StopPreparation();
        _leases = null;
        _prepareCancel = new CancellationTokenSource();
        var self = this.AsReference<IJobGrain>();
        _preparation = JobPreparation.Start(R.Spec!, _stores, () => self.PreparedAsync(), _log, _prepareCancel.Token);
    }

    private void StopPreparation()
    {
        _prepareCancel?.Cancel();
        _prepareCancel?.Dispose();
        _prepareCancel = null;
        _preparation = null;
    }

    /// <summary>Takes in a finished preparation: shards (committed ones done), or the job's failure with the reason.</summary>
    private async Task IntegrateAsync()
    {
        if (_preparation?.Plan is not { IsCompleted: true } prepare) return;
        _preparation = null;
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
        var o = R.Spec!.Options;
        _leases = new LeaseTable(plan.Shards, plan.Committed, o.MaxAttempts, TimeSpan.FromSeconds(o.LeaseSeconds));
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
            JobId, plan.Shards.Count, o.ShardSize, plan.Examples, plan.ManifestRejects, plan.Committed.Count, plan.Checkpoint.Fingerprint[..12]);
    }

    private void ExpireLeases()
    {
        foreach (var s in _leases?.Expire(Now) ?? [])
            _log.LogWarning("job {Job}: {What} lease of {Owner} expired; {Next}", JobId, s.What, s.Owner,
                s.State == LeaseTable.SlotState.Failed ? "giving up on it" : "back to the queue");
    }

    private JobStatus Status()
    {
        var now = Now;
        var (done, running, failed, pending, examplesDone, examplesFailed, owners) =
            _leases?.Counts() ?? (0, 0, 0, 0, 0, 0, []);
        double rate = _rate.PerSecond(now, _leases?.FirstLeaseAt);
        int remaining = Math.Max(0, R.ExamplesTotal - examplesDone - examplesFailed);
        double? eta = R.State is JobState.Running && rate > 0 ? remaining / rate : R.State is JobState.Finalizing ? 0 : null;
        var state = Active && _leases is null ? JobState.Preparing : R.State;
        string? notice = !Active ? null : _outage?.Notice(now) ?? (_leases is null ? _preparation?.Notice : null);
        return new JobStatus(JobId, state, R.Error, R.ShardsTotal, done, running, failed, pending, R.ShardsSkipped, R.ExamplesTotal, examplesDone,
            R.ManifestRejects + (_leases?.RuntimeRejects ?? 0), rate, eta, R.SubmittedAt, R.FinishedAt, R.Spec, R.Fingerprint, R.Summary, owners.Length,
            _leases?.Attempts ?? 0, notice, owners);
    }
}
