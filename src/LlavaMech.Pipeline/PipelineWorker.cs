using LlavaMech.Datasets.Manifest;
using System.Diagnostics;
using LlavaMech.Runtime;
using LlavaMech.Runtime.Stats;
using LlavaMech.Storage;
using LlavaMech.Telemetry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace LlavaMech.Pipeline;

/// <summary>The device runners of one silo (one per declared device), started and stopped with the host.</summary>
public sealed class DevicePool : IHostedService, IAsyncDisposable
{
    public DevicePool(PipelineSiloOptions options, ILogger<DevicePool> log)
    {
        if (options.TorchThreads > 0 && options.Devices.Count > 0) TorchSharp.torch.set_num_threads(options.TorchThreads);
        Runners = options.Devices
            .Select(d => new DeviceRunner(new DeviceRunnerOptions
                {
                    Device = d, Threads = options.WorkersPerDevice, Capacity = options.RunnerCapacity, Preload = options.Preload, TorchThreads = options.TorchThreads,
                },
                m => log.LogInformation("{Message}", m), log))
            .ToList();
    }

    public IReadOnlyList<DeviceRunner> Runners { get; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var r in Runners) await r.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        foreach (var r in Runners) await r.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var r in Runners) await r.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>Counters of a silo's worker.</summary>
/// <param name="LeasesAbandoned">leases dropped because the silo stopped mid-shard (given back to the job, so their shards run again elsewhere at once).</param>
/// <param name="StorageFailures">attempts (among <paramref name="ShardsFailed"/>) that failed because the output storage was unreachable.</param>
/// <param name="LeasesReleased">abandoned leases that the job took back (the others expire).</param>
public sealed record WorkerStats(long ShardsCommitted, long ShardsAlreadyCommitted, long ShardsFailed, long LeasesLost, long LeasesAbandoned,
    long Finalizations, long Examples, int ActiveLeases, long StorageFailures = 0, long LeasesReleased = 0);

/// <summary>
/// The worker of one silo: for each of its devices, <see cref="PipelineSiloOptions.WorkersPerDevice"/> x
/// <see cref="PipelineSiloOptions.LeasesPerThread"/> loops that, while
/// jobs are active, pull a lease from a job grain, run the shard's examples through the device's
/// <see cref="DeviceRunner"/>, write and commit the shard's Parquet parts with <see cref="ShardCommitter"/>, and report
/// back; a lease is renewed at a third of its duration, and a lost lease (expired, job cancelled) stops the shard and
/// drops its output. A silo without devices runs no loops (it hosts grains only). Each shard is one <c>shard</c> span
/// (<see cref="PipelineTracing"/>) and is counted in <see cref="PipelineMetrics"/>: examples analysed (ok / rejected),
/// their analysis time, the shard's outcome and duration.
/// </summary>
public sealed class PipelineWorker(
    IGrainFactory grains,
    DevicePool pool,
    PipelineSiloOptions options,
    ILocalSiloDetails silo,
    IHostApplicationLifetime lifetime,
    PipelineMetrics metrics,
    ObjectStores stores,
    ILogger<PipelineWorker> log) : BackgroundService
{
    private long _committed, _already, _failed, _lost, _abandoned, _released, _finalized, _examples, _storageFailures;
    private int _active;

    public WorkerStats Stats => new(Interlocked.Read(ref _committed), Interlocked.Read(ref _already), Interlocked.Read(ref _failed),
        Interlocked.Read(ref _lost), Interlocked.Read(ref _abandoned), Interlocked.Read(ref _finalized), Interlocked.Read(ref _examples), Volatile.Read(ref _active),
        Interlocked.Read(ref _storageFailures), Interlocked.Read(ref _released));

    /// <summary>Leases this silo holds right now.</summary>
    public int ActiveLeases => Volatile.Read(ref _active);

    protected override async Task ExecuteAsync(CancellationToken stop)
    {
        // Grain calls need the silo up: wait for the whole host to have started.
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
        using (stop.Register(() => started.TrySetCanceled(stop)))
        {
            try { await started.Task.ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
        }
        if (pool.Runners.Count == 0)
        {
            log.LogInformation("silo {Silo} declares no devices: it hosts grains but runs no shards", silo.SiloAddress);
            return;
        }
        log.LogInformation("silo {Silo}: pulling work on {Devices} ({Workers} per device, {Leases} leases per runner thread)", silo.SiloAddress,
            string.Join(", ", pool.Runners.Select(r => r.Device)), options.WorkersPerDevice, options.LeasesPerThread);
        // Lease loops share their device's runner: with more loops than runner threads, one loop's shard computes while
        // another's commits.
        int loopsPerDevice = options.WorkersPerDevice * options.LeasesPerThread;
        var loops = pool.Runners.SelectMany(r => Enumerable.Range(0, loopsPerDevice).Select(i => LoopAsync(r, i, stop))).ToList();
        await Task.WhenAll(loops).ConfigureAwait(false);
    }

    private async Task LoopAsync(DeviceRunner runner, int slot, CancellationToken stop)
    {
        string worker = $"{silo.SiloAddress.ToParsableString()}/{runner.Device}#{slot}";
        int rotate = slot;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                var active = await GrainCalls.RetryAsync(() => grains.GetGrain<IJobRegistryGrain>(0).ActiveAsync(), stop).ConfigureAwait(false);
                WorkLease? lease = null;
                for (int i = 0; i < active.Length && lease is null; i++)
                {
                    var jobId = active[(i + rotate) % active.Length];
                    lease = await GrainCalls.RetryAsync(() => grains.GetGrain<IJobGrain>(jobId).AcquireAsync(worker), stop).ConfigureAwait(false);
                }
                rotate++;
                if (lease is null)
                {
                    await Task.Delay(options.PollInterval, stop).ConfigureAwait(false);
                    continue;
                }
                await RunLeaseAsync(lease, runner, worker, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                log.LogWarning(e, "worker {Worker}: {Error}; retrying", worker, e.Message);
                try { await Task.Delay(options.PollInterval, stop).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
            }
        }
    }

    private async Task RunLeaseAsync(WorkLease lease, DeviceRunner runner, string worker, CancellationToken stop)
    {
        var job = grains.GetGrain<IJobGrain>(lease.JobId);
        using var leaseCts = CancellationTokenSource.CreateLinkedTokenSource(stop);
        var token = leaseCts.Token;
        bool lost = false;
        Interlocked.Increment(ref _active);
        var renewals = RenewAsync(job, lease, worker, () => { lost = true; leaseCts.Cancel(); }, token);
        var clock = Stopwatch.StartNew();
        bool isShard = lease.Kind == WorkKind.Shard;
        using var span = isShard ? PipelineTracing.StartShard(lease.JobId, lease.Shard, runner.Device, lease.Examples.Length, worker) : null;
        string? outcome = null;   // the shard's outcome for the metrics; null: nothing to record (finalization, or the silo stopped)
        try
        {
            if (lease.Kind == WorkKind.Finalize)
            {
                var summary = await Finalizer.RunAsync(stores.Open(lease.Spec.Output), lease.Spec, lease.ModelFingerprint, token).ConfigureAwait(false);
                await GrainCalls.RetryAsync(() => job.CompleteFinalizeAsync(lease.LeaseId, summary), stop).ConfigureAwait(false);
                Interlocked.Increment(ref _finalized);
                return;
            }
            var report = await RunShardAsync(lease, runner, worker, clock, token).ConfigureAwait(false);
            outcome = report.Outcome == ShardOutcome.Committed ? "committed" : "already_committed";
            span.Succeed(outcome);
            await GrainCalls.RetryAsync(() => job.CompleteShardAsync(lease.LeaseId, report), stop).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            if (lost)
            {
                Interlocked.Increment(ref _lost);
                outcome = "lost";
                span?.SetTag(TelemetryNames.OutcomeAttribute, outcome);
                log.LogWarning("worker {Worker}: lost the lease of job {Job} {What}; output dropped", worker, lease.JobId, What(lease));
            }
            else
            {
                // The silo is stopping (SIGTERM, Ctrl+C): nothing of the shard is committed; the lease goes back to the
                // job at once, so another worker redoes the shard without waiting for the lease to expire.
                Interlocked.Increment(ref _abandoned);
                outcome = "abandoned";
                span?.SetTag(TelemetryNames.OutcomeAttribute, outcome);
                bool released = await ReleaseAsync(job, lease).ConfigureAwait(false);
                if (released) Interlocked.Increment(ref _released);
                log.LogInformation("worker {Worker}: stopping; job {Job} {What} abandoned, lease {Released}", worker, lease.JobId, What(lease),
                    released ? "released" : "left to expire (job unreachable)");
            }
        }
        catch (Exception e) when (!stop.IsCancellationRequested)
        {
            Interlocked.Increment(ref _failed);
            outcome = "failed";
            span.Fail(e);
            if (!isShard) metrics.Failure("finalize");
            try
            {
                if (StorageOutage.Find(e) is { } storage)
                {
                    // The output storage is unreachable: the job pauses and retries, and gives up after its storage wait.
                    Interlocked.Increment(ref _storageFailures);
                    log.LogWarning("worker {Worker}: job {Job} {What}: output storage unreachable: {Error}", worker, lease.JobId, What(lease), storage.Message);
                    await GrainCalls.RetryAsync(() => job.StorageUnavailableAsync(lease.LeaseId, storage.Endpoint, storage.Message), stop).ConfigureAwait(false);
                }
                else
                {
                    log.LogWarning(e, "worker {Worker}: job {Job} {What} failed: {Error}", worker, lease.JobId, What(lease), e.Message);
                    await GrainCalls.RetryAsync(() => job.FailAsync(lease.LeaseId, e.Message), stop).ConfigureAwait(false);
                }
            }
            catch (Exception f) when (f is not OperationCanceledException) { log.LogWarning("worker {Worker}: cannot report the failure: {Error}", worker, f.Message); }
        }
        finally
        {
            if (isShard && outcome is not null) metrics.ShardFinished(clock.Elapsed, runner.Device, outcome);
            Interlocked.Decrement(ref _active);
            leaseCts.Cancel();
            try { await renewals.ConfigureAwait(false); } catch (OperationCanceledException) { }
        }
    }

    /// <summary>How long a stopping worker tries to give a lease back before it leaves it to expire.</summary>
    private static readonly TimeSpan ReleaseTimeout = TimeSpan.FromSeconds(5);

    private async Task<bool> ReleaseAsync(IJobGrain job, WorkLease lease)
    {
        try
        {
            await job.ReleaseAsync(lease.LeaseId).WaitAsync(ReleaseTimeout).ConfigureAwait(false);
            return true;
        }
        catch (Exception e)
        {
            log.LogWarning("cannot release the lease of job {Job} {What}: {Error}", lease.JobId, What(lease), e.Message);
            return false;
        }
    }

    private static string What(WorkLease lease) => lease.Kind == WorkKind.Finalize ? "finalization" : $"shard {lease.Shard}";

    private async Task<ShardReport> RunShardAsync(WorkLease lease, DeviceRunner runner, string worker, Stopwatch clock, CancellationToken token)
    {
        var spec = lease.Spec;
        var committer = new ShardCommitter(stores.Open(spec.Output));
        if (await committer.IsCommittedAsync(lease.Shard, token).ConfigureAwait(false))
        {
            // Committed already (by an earlier job, or by an attempt whose storage went away while it published):
            // a commit of nothing finishes an interrupted publication and writes nothing else.
            await committer.CommitAsync(lease.Shard, StatisticCatalog.NewShard(spec.RunId, lease.ModelFingerprint), token).ConfigureAwait(false);
            return new ShardReport(lease.Shard, ShardOutcome.AlreadyCommitted, lease.Examples.Length, 0, worker, clock.Elapsed.TotalSeconds);
        }

        var model = new ModelSpec(Path.GetFullPath(spec.ModelDir), spec.Options.DType);
        var settings = spec.Options.Analysis;
        // All examples go to the runner at once, in chunks (one work item each; its bounded channel keeps the number in
        // flight small). A chunk holds whole images: the questions about one image share one prefix pass (--prefix-reuse),
        // and equal-length examples one batched pass; chunks fill up to the batch size with images in order, then prompt
        // length. The outcomes keep the shard's order.
        var works = lease.Examples;
        var outcomes = new ExampleOutcome[works.Length];
        if (settings.BatchSize <= 1 && settings.PrefixReuse == PrefixReuse.Off)
            outcomes = await Task.WhenAll(works.Select(w => runner.AnalyzeAsync(model, w, settings, token))).ConfigureAwait(false);
        else
        {
            var chunks = ChunksByImage(works, settings.BatchSize);
            var results = await Task.WhenAll(chunks.Select(c => runner.AnalyzeBatchAsync(model, c.Select(i => works[i]).ToArray(), settings, token)))
                .ConfigureAwait(false);
            for (int c = 0; c < chunks.Count; c++)
                for (int j = 0; j < chunks[c].Length; j++)
                    outcomes[chunks[c][j]] = results[c][j];
        }

        var tables = StatisticCatalog.NewShard(spec.RunId, lease.ModelFingerprint);
        int rejected = 0;
        foreach (var o in outcomes)
        {
            metrics.ExampleDuration(TimeSpan.FromMilliseconds(o.ForwardMs + o.StatisticsMs), runner.Device);
            if (o.Rows is { } rows) tables.AddRows(rows.All);
            else
            {
                rejected++;
                tables.Add(RejectRow.Of(o.Work.Line, o.RejectReason ?? "rejected", o.Work.RawLine));
            }
        }
        // Counted when analysed, whether or not this attempt's commit wins: the counter's rate is the silo's throughput.
        metrics.ExamplesProcessed(outcomes.Length - rejected, runner.Device);
        metrics.ExamplesProcessed(rejected, runner.Device, "rejected");
        foreach (var r in lease.Rejects)
            tables.Add(r.RawSha256.Length > 0 ? new RejectRow(r.Line, r.Reason, r.RawLine, r.RawBytes, r.RawSha256) : RejectRow.Of(r.Line, r.Reason, r.RawLine));

        var result = await committer.CommitAsync(lease.Shard, tables, token).ConfigureAwait(false);
        if (result.Won) Interlocked.Increment(ref _committed);
        else Interlocked.Increment(ref _already);
        Interlocked.Add(ref _examples, lease.Examples.Length);
        return new ShardReport(lease.Shard, result.Won ? ShardOutcome.Committed : ShardOutcome.AlreadyCommitted, lease.Examples.Length,
            result.Won ? rejected : 0, worker, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Indices of <paramref name="works"/> in chunks of whole images (an image's examples are never split, however many):
    /// image examples first, by image then prompt length, then text-only ones by prompt length, a chunk closing when the
    /// next image would take it past <paramref name="batchSize"/>.
    /// </summary>
    public static List<int[]> ChunksByImage(IReadOnlyList<ManifestExample> works, int batchSize)
    {
        var order = Enumerable.Range(0, works.Count).OrderBy(i => works[i].ImagePath is null)
            .ThenBy(i => works[i].ImagePath, StringComparer.Ordinal).ThenBy(i => works[i].Prompt.Length).ToArray();
        var chunks = new List<int[]>();
        var current = new List<int>();
        for (int k = 0; k < order.Length; )
        {
            int end = k + 1;
            if (works[order[k]].ImagePath is { } image)
                while (end < order.Length && works[order[end]].ImagePath == image) end++;
            if (current.Count > 0 && current.Count + (end - k) > Math.Max(1, batchSize)) { chunks.Add(current.ToArray()); current.Clear(); }
            for (int j = k; j < end; j++) current.Add(order[j]);
            k = end;
        }
        if (current.Count > 0) chunks.Add(current.ToArray());
        return chunks;
    }

    private async Task RenewAsync(IJobGrain job, WorkLease lease, string worker, Action onLost, CancellationToken token)
    {
        var every = TimeSpan.FromSeconds(lease.Spec.Options.LeaseSeconds / 3);
        var expires = lease.ExpiresAt;
        while (!token.IsCancellationRequested)
        {
            await Task.Delay(every, token).ConfigureAwait(false);
            try
            {
                var r = await job.RenewAsync(lease.LeaseId, lease.Shard, worker).WaitAsync(token).ConfigureAwait(false);
                if (!r.Held)
                {
                    log.LogWarning("lease of job {Job} {What} not renewed: {Reason}", lease.JobId, What(lease), r.Reason);
                    onLost();
                    return;
                }
                expires = r.ExpiresAt;
            }
            catch (Exception e) when (GrainCalls.IsTransient(e))
            {
                // The job grain may be moving to another silo; keep trying until the lease would have expired anyway.
                if (DateTimeOffset.UtcNow >= expires)
                {
                    onLost();
                    return;
                }
            }
        }
    }
}
