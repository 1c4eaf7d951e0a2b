using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using LlavaMech.Storage;

namespace LlavaMech.Pipeline;

/// <summary>
/// What a submitter does with a cluster: submit a job, watch it to the end, cancel it. Calls are retried across silo
/// failures; a job whose grain lost its state (memory state store, silo gone) is submitted again, which resumes it
/// from the committed shards.
/// </summary>
public sealed class PipelineClient(IGrainFactory grains)
{
    /// <summary>How often <see cref="WatchAsync"/> asks for the status.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// The default run id of an output location: "run-" + 12 hex digits of SHA-256 of the location, so running the same
    /// command again resumes the same run (one output location holds one run).
    /// </summary>
    public static string DefaultRunId(string output) =>
        "run-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(OutputLocation.Parse(output).ToString())))[..12];

    /// <summary>
    /// How long <see cref="SubmitAsync"/> waits for the job's preparation (checkpoint validation, manifest, committed
    /// shards) before it answers with the job still preparing.
    /// </summary>
    public TimeSpan PrepareWait { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Submits the job and returns its status once its preparation has ended or after <see cref="PrepareWait"/>,
    /// whichever is first: a checkpoint that fails validation comes back as <see cref="JobState.Failed"/> with the
    /// reason, before any shard starts. The job grain answers the submission at once; this waits by polling its status.
    /// </summary>
    public async Task<JobStatus> SubmitAsync(JobSpec spec, CancellationToken ct = default)
    {
        spec.Validate();
        var status = await GrainCalls.RetryAsync(() => grains.GetGrain<IJobGrain>(spec.JobId).SubmitAsync(spec), ct).ConfigureAwait(false);
        var clock = Stopwatch.StartNew();
        while (status.State == JobState.Preparing && clock.Elapsed < PrepareWait)
        {
            await Task.Delay(PreparePoll, ct).ConfigureAwait(false);
            status = await StatusAsync(spec.JobId, ct).ConfigureAwait(false);
        }
        return status;
    }

    private static readonly TimeSpan PreparePoll = TimeSpan.FromMilliseconds(50);

    public Task<JobStatus> StatusAsync(string jobId, CancellationToken ct = default) =>
        GrainCalls.RetryAsync(() => grains.GetGrain<IJobGrain>(jobId).GetStatusAsync(), ct);

    public Task<JobStatus> CancelAsync(string jobId, string reason, CancellationToken ct = default) =>
        GrainCalls.RetryAsync(() => grains.GetGrain<IJobGrain>(jobId).CancelAsync(reason), ct);

    public Task<JobEntry[]> ListAsync(CancellationToken ct = default) =>
        GrainCalls.RetryAsync(() => grains.GetGrain<IJobRegistryGrain>(0).ListAsync(), ct);

    /// <summary>
    /// Polls the job until it is completed, failed or cancelled, reporting every status to <paramref name="progress"/>.
    /// With <paramref name="spec"/>, a job that comes back unknown (its state was lost) is submitted again.
    /// </summary>
    public async Task<JobStatus> WatchAsync(string jobId, JobSpec? spec, Action<JobStatus>? progress, CancellationToken ct = default)
    {
        while (true)
        {
            var status = await StatusAsync(jobId, ct).ConfigureAwait(false);
            if (status.State == JobState.Unknown && spec is not null)
                status = await SubmitAsync(spec, ct).ConfigureAwait(false);
            progress?.Invoke(status);
            if (status.IsTerminal || status.State == JobState.Unknown) return status;
            await Task.Delay(PollInterval, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Submits and watches to the end.</summary>
    public async Task<JobStatus> RunAsync(JobSpec spec, Action<JobStatus>? progress, CancellationToken ct = default)
    {
        var first = await SubmitAsync(spec, ct).ConfigureAwait(false);
        progress?.Invoke(first);
        return first.IsTerminal ? first : await WatchAsync(spec.JobId, spec, progress, ct).ConfigureAwait(false);
    }
}
