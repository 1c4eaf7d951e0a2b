using LlavaMech.Datasets.Manifest;
using LlavaMech.Analysis;
using LlavaMech.Runtime;

namespace LlavaMech.Pipeline;

/// <summary>
/// Options of a job: what is computed per example (<see cref="Analysis"/>, the one analysis settings record), how the
/// manifest is cut and read, how leases behave.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record JobOptions
{
    /// <summary>Examples per shard (the unit of leasing, commit and resume).</summary>
    [Id(0)] public int ShardSize { get; init; } = 32;

    /// <summary>What every example's analysis computes and keeps (travels as JSON: <see cref="AnalysisSettingsConverter"/>).</summary>
    [Id(1)] public AnalysisSettings Analysis { get; init; } = new();

    /// <summary>auto, float32, bfloat16 or float16 (the same on every worker; the device is the worker's).</summary>
    [Id(6)] public string DType { get; init; } = "auto";

    /// <summary>A shard lease lasts this long unless renewed (workers renew at a third of it).</summary>
    [Id(7)] public double LeaseSeconds { get; init; } = 60;

    /// <summary>Failed attempts (errors or expired leases) after which a shard counts as failed.</summary>
    [Id(8)] public int MaxAttempts { get; init; } = 3;

    /// <summary>k of head_summary/layer_summary's top-k share.</summary>
    [Id(9)] public int SummaryTopK { get; init; } = 10;

    /// <summary>How long the job pauses and retries while its output storage is unreachable (every request already
    /// retried with backoff) before it fails with the endpoint and the cause; 0 fails at the first such error.</summary>
    [Id(10)] public double StorageWaitSeconds { get; init; } = 300;

    /// <summary>A manifest line longer than this many bytes is rejected without being held in memory.</summary>
    [Id(12)] public long MaxLineBytes { get; init; } = ManifestLimits.DefaultMaxLineBytes;

    /// <summary>Folders, one per line (absolute), where absolute image paths and the targets of symbolic links may lie
    /// besides the manifest's folder; empty: none.</summary>
    [Id(14)] public string ImageRoots { get; init; } = "";

    /// <summary>The <see cref="ImageRoots"/> as a list.</summary>
    public IReadOnlyList<string> ImageRootList => ImageRoots.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>What the job's manifest read accepts.</summary>
    public ManifestLimits ToManifestLimits() => new(MaxLineBytes, ImageRootList);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        if (ShardSize < 1) throw new ArgumentException($"shard size must be at least 1, got {ShardSize}");
        if (Analysis is null) throw new ArgumentException("the job has no analysis settings");
        if (DType is not ("auto" or "float32" or "fp32" or "f32" or "bfloat16" or "bf16" or "float16" or "fp16" or "f16" or "half"))
            throw new ArgumentException($"dtype '{DType}': use auto, float32, bfloat16 or float16");
        if (!(LeaseSeconds >= 1)) throw new ArgumentException($"lease must be at least 1 s, got {LeaseSeconds}");
        if (MaxAttempts < 1) throw new ArgumentException($"max attempts must be at least 1, got {MaxAttempts}");
        if (SummaryTopK < 1) throw new ArgumentException($"summary top-k must be at least 1, got {SummaryTopK}");
        if (!(StorageWaitSeconds >= 0)) throw new ArgumentException($"storage wait must be >= 0 s, got {StorageWaitSeconds}");
        if (ImageRootList.Any(r => !Path.IsPathRooted(r))) throw new ArgumentException($"image roots must be absolute paths, got '{ImageRoots}'");
        ToManifestLimits().Validate();
        Analysis.Validate();
    }
}

/// <summary>
/// How records declared once in libraries that know nothing of Orleans (<see cref="AnalysisSettings"/>,
/// <see cref="ManifestExample"/>, <see cref="ManifestReject"/>) cross silos and clients: as their JSON documents, so
/// their fields are not listed a second time in an Orleans copy.
/// </summary>
[GenerateSerializer, Immutable]
public readonly struct JsonSurrogate(string json)
{
    [Id(0)] public readonly string Json = json;
}

/// <inheritdoc cref="JsonSurrogate"/>
public abstract class JsonSurrogateConverter<T> : IConverter<T, JsonSurrogate> where T : class
{
    private static readonly System.Text.Json.JsonSerializerOptions Options = new() { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };

    public T ConvertFromSurrogate(in JsonSurrogate surrogate) =>
        System.Text.Json.JsonSerializer.Deserialize<T>(surrogate.Json, Options) ?? throw new InvalidDataException($"{typeof(T).Name}: empty document");

    public JsonSurrogate ConvertToSurrogate(in T value) => new(System.Text.Json.JsonSerializer.Serialize(value, Options));
}

[RegisterConverter] public sealed class AnalysisSettingsConverter : JsonSurrogateConverter<AnalysisSettings>;
[RegisterConverter] public sealed class ManifestExampleConverter : JsonSurrogateConverter<ManifestExample>;
[RegisterConverter] public sealed class ManifestRejectConverter : JsonSurrogateConverter<ManifestReject>;

/// <summary>A job: one model over one manifest into one output location, as run <see cref="RunId"/>.</summary>
/// <param name="ModelDir">checkpoint folder, readable by every silo (absolute).</param>
/// <param name="ManifestPath">JSON Lines manifest, readable by the silo of the job grain; its images by every worker.</param>
/// <param name="Output">local folder, az://container/prefix or https blob URL (see OutputLocation).</param>
/// <param name="RunId">the run's name in every row; an output location holds one run, and a job with the same run id
/// and output resumes it (committed shards are skipped).</param>
[GenerateSerializer, Immutable]
public sealed record JobSpec(
    [property: Id(0)] string RunId,
    [property: Id(1)] string ModelDir,
    [property: Id(2)] string ManifestPath,
    [property: Id(3)] string Output,
    [property: Id(4)] JobOptions Options)
{
    /// <summary>The job's grain key: the run id.</summary>
    public string JobId => RunId;

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(RunId)) throw new ArgumentException("run id is empty");
        if (RunId.Length > 128 || RunId.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            throw new ArgumentException($"run id '{RunId}' must be 1-128 letters, digits, '-', '_' or '.'");
        if (string.IsNullOrWhiteSpace(ModelDir)) throw new ArgumentException("model folder is empty");
        if (string.IsNullOrWhiteSpace(ManifestPath)) throw new ArgumentException("manifest path is empty");
        if (string.IsNullOrWhiteSpace(Output)) throw new ArgumentException("output location is empty");
        (Options ?? throw new ArgumentException("job options are missing")).Validate();
    }
}

public enum JobState
{
    /// <summary>No job under this id.</summary>
    Unknown,

    /// <summary>Validating the checkpoint, reading the manifest, finding committed shards.</summary>
    Preparing,

    /// <summary>Shards are being leased and run.</summary>
    Running,

    /// <summary>Every shard is done; aggregates and figures are being written.</summary>
    Finalizing,

    Completed,
    Failed,
    Cancelled,
}

public enum WorkKind
{
    Shard,
    Finalize,
}

/// <summary>
/// The right to work on one shard (or on the job's finalization) until <see cref="ExpiresAt"/>; renew it before then.
/// An expired lease goes back to the queue, and a worker that loses its lease stops and discards its output.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record WorkLease(
    [property: Id(0)] string JobId,
    [property: Id(1)] string LeaseId,
    [property: Id(2)] WorkKind Kind,
    [property: Id(3)] int Shard,
    [property: Id(4)] int Attempt,
    [property: Id(5)] DateTimeOffset ExpiresAt,
    [property: Id(6)] JobSpec Spec,
    [property: Id(7)] string ModelFingerprint,
    [property: Id(8)] ManifestExample[] Examples,
    [property: Id(9)] ManifestReject[] Rejects);

/// <summary>Answer to a renewal: <see cref="Held"/> false when the lease was lost (expired and re-leased, job cancelled or gone).</summary>
[GenerateSerializer, Immutable]
public sealed record LeaseRenewal([property: Id(0)] bool Held, [property: Id(1)] DateTimeOffset ExpiresAt, [property: Id(2)] string? Reason);

public enum ShardOutcome
{
    /// <summary>This attempt's commit won.</summary>
    Committed,

    /// <summary>The shard was already committed (an earlier run, or a concurrent attempt that won); this attempt's output was discarded.</summary>
    AlreadyCommitted,
}

/// <summary>What a worker reports for a finished shard.</summary>
[GenerateSerializer, Immutable]
public sealed record ShardReport(
    [property: Id(0)] int Shard,
    [property: Id(1)] ShardOutcome Outcome,
    [property: Id(2)] int Examples,
    [property: Id(3)] int ExamplesRejected,
    [property: Id(4)] string Worker,
    [property: Id(5)] double Seconds);

/// <summary>Accuracy and counts of one task (vqa or tqa).</summary>
[GenerateSerializer, Immutable]
public sealed record TaskSummary(
    [property: Id(0)] string Task,
    [property: Id(1)] long Examples,
    [property: Id(2)] long WithExpected,
    [property: Id(3)] long Correct)
{
    public double? Accuracy => WithExpected > 0 ? (double)Correct / WithExpected : null;
}

/// <summary>A head of head_summary (outcome "all").</summary>
[GenerateSerializer, Immutable]
public sealed record SummaryHead(
    [property: Id(0)] string Task,
    [property: Id(1)] int Layer,
    [property: Id(2)] int Head,
    [property: Id(3)] double Mean,
    [property: Id(4)] double TopKShare,
    [property: Id(5)] double? MeanAttnToImage);

/// <summary>
/// One (task, selection, k) group of <c>causal_effects</c> in the run summary: n, mean delta with its 95% Student-t
/// interval (null for n = 1), flip rate with its 95% Wilson interval (Storage's <c>CausalSummaryRow</c>).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record SummaryCausal(
    [property: Id(0)] string Task,
    [property: Id(1)] string Selection,
    [property: Id(2)] int K,
    [property: Id(3)] long N,
    [property: Id(4)] double MeanDelta,
    [property: Id(5)] double? DeltaLo,
    [property: Id(6)] double? DeltaHi,
    [property: Id(7)] double FlipRate,
    [property: Id(8)] double FlipLo,
    [property: Id(9)] double FlipHi);

/// <summary>The log-increase heads against another selection on the same examples, in the run summary (Storage's <c>CausalPairedRow</c>).</summary>
[GenerateSerializer, Immutable]
public sealed record SummaryCausalPaired(
    [property: Id(0)] string Task,
    [property: Id(1)] string Versus,
    [property: Id(2)] int K,
    [property: Id(3)] long N,
    [property: Id(4)] double MeanDiff,
    [property: Id(5)] double? DiffLo,
    [property: Id(6)] double? DiffHi,
    [property: Id(7)] double ShareLogIncreaseCostsMore);

/// <summary>Per task and image part (base, grid, newline) of a LLaVA-NeXT run: the mean shares of <c>image_part_shares</c>.</summary>
[GenerateSerializer, Immutable]
public sealed record SummaryImagePart(
    [property: Id(0)] string Task,
    [property: Id(1)] string Part,
    [property: Id(2)] long Examples,
    [property: Id(3)] double MeanAttnShare,
    [property: Id(4)] double? MeanLogIncreaseShare);

/// <summary>One point of the knockout curve in the run summary: mean delta of <c>last:image</c> knocked out in layers start..end, per task.</summary>
[GenerateSerializer, Immutable]
public sealed record SummaryKnockout(
    [property: Id(0)] string Task,
    [property: Id(1)] int Window,
    [property: Id(2)] int StartLayer,
    [property: Id(3)] int EndLayer,
    [property: Id(4)] long N,
    [property: Id(5)] double MeanDelta,
    [property: Id(6)] double? DeltaLo,
    [property: Id(7)] double? DeltaHi,
    [property: Id(8)] double FlipRate);

/// <summary>What a finished run holds, read back from the committed tables.</summary>
/// <param name="Tables">table name -> rows, for every table with a committed part.</param>
/// <param name="Files">keys of the summary files and figures written into the output.</param>
[GenerateSerializer, Immutable]
public sealed record RunSummary(
    [property: Id(0)] long Examples,
    [property: Id(1)] long Rejects,
    [property: Id(2)] TaskSummary[] Tasks,
    [property: Id(3)] SummaryHead[] TopHeads,
    [property: Id(4)] Dictionary<string, long> Tables,
    [property: Id(5)] string[] Files,
    [property: Id(6)] int CommittedShards,
    [property: Id(7)] string Output)
{
    /// <summary>Mean delta and flip rate per task and selection of <c>causal_effects</c> (empty without <c>--causal</c>).</summary>
    [Id(8)] public SummaryCausal[] Causal { get; init; } = [];

    /// <summary>The knockout curve per task of <c>knockout_effects</c> (empty without <c>--knockout-window</c>).</summary>
    [Id(9)] public SummaryKnockout[] Knockout { get; init; } = [];

    /// <summary>log_increase against each other selection on the same examples (paired; empty without <c>--causal</c>).</summary>
    [Id(10)] public SummaryCausalPaired[] CausalPaired { get; init; } = [];

    /// <summary>Per task, the image parts' mean attention and log-increase shares (LLaVA-NeXT; empty otherwise).</summary>
    [Id(11)] public SummaryImagePart[] ImageParts { get; init; } = [];

    public long WithExpected => Tasks.Sum(t => t.WithExpected);
    public long Correct => Tasks.Sum(t => t.Correct);
    public double? Accuracy => WithExpected > 0 ? (double)Correct / WithExpected : null;
}

/// <summary>Where a job stands.</summary>
/// <param name="ShardsSkipped">shards found committed when the job started (a resumed run): done, but not counted in the rate.</param>
/// <param name="ExamplesDone">manifest examples in done shards (those rejected while running included).</param>
/// <param name="Rejects">manifest lines rejected by the reader, plus examples rejected while running (reported so far).</param>
/// <param name="ExamplesPerSecond">over the last minute of completions in this job's current activation.</param>
/// <param name="Workers">workers holding a lease now.</param>
/// <param name="Notice">what the job is waiting for while it is active (e.g. paused: output storage unreachable), else null.</param>
/// <param name="LeaseOwners">the workers holding a lease now ("&lt;silo address&gt;/&lt;device&gt;#&lt;slot&gt;").</param>
[GenerateSerializer, Immutable]
public sealed record JobStatus(
    [property: Id(0)] string JobId,
    [property: Id(1)] JobState State,
    [property: Id(2)] string? Error,
    [property: Id(3)] int ShardsTotal,
    [property: Id(4)] int ShardsDone,
    [property: Id(5)] int ShardsRunning,
    [property: Id(6)] int ShardsFailed,
    [property: Id(7)] int ShardsPending,
    [property: Id(8)] int ShardsSkipped,
    [property: Id(9)] int ExamplesTotal,
    [property: Id(10)] int ExamplesDone,
    [property: Id(11)] int Rejects,
    [property: Id(12)] double ExamplesPerSecond,
    [property: Id(13)] double? EtaSeconds,
    [property: Id(14)] DateTimeOffset? SubmittedAt,
    [property: Id(15)] DateTimeOffset? FinishedAt,
    [property: Id(16)] JobSpec? Spec,
    [property: Id(17)] string? ModelFingerprint,
    [property: Id(18)] RunSummary? Summary,
    [property: Id(19)] int Workers,
    [property: Id(20)] int Attempts,
    [property: Id(21)] string? Notice = null,
    [property: Id(22)] string[]? LeaseOwners = null)
{
    public bool IsTerminal => State is JobState.Completed or JobState.Failed or JobState.Cancelled;

    public static JobStatus Unknown(string jobId) =>
        new(jobId, JobState.Unknown, null, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, null, null, null, null, null, null, 0, 0);
}

/// <summary>One job of the registry's list.</summary>
[GenerateSerializer, Immutable]
public sealed record JobEntry([property: Id(0)] string JobId, [property: Id(1)] DateTimeOffset SubmittedAt, [property: Id(2)] bool Active);

/// <summary>
/// A job: splits the manifest into shards, leases them to workers, tracks their states, and leases the finalization
/// (aggregates, figures, summary) once every shard is done. Key: the run id.
/// </summary>
public interface IJobGrain : IGrainWithStringKey
{
    /// <summary>
    /// Starts the job (or resumes it: shards committed in the output are skipped). Idempotent for the same spec
    /// while the job is active; a finished job restarts. Answers at once, with the job preparing (checkpoint
    /// validation, manifest, committed shards: off the grain's turns); a checkpoint that fails validation fails the
    /// job with the reason before any shard starts. <see cref="PipelineClient.SubmitAsync"/> waits for that outcome.
    /// </summary>
    Task<JobStatus> SubmitAsync(JobSpec spec);

    /// <summary>
    /// The job's preparation finished: its plan (or its failure) is taken in, in the grain's turn. Called by the
    /// preparation on its own grain; every other call takes a finished preparation in as well, so this one only
    /// makes it prompt.
    /// </summary>
    Task PreparedAsync();

    Task<JobStatus> GetStatusAsync();

    /// <summary>Stops leasing; running shards lose their leases at their next renewal. Committed shards stay.</summary>
    Task<JobStatus> CancelAsync(string reason);

    /// <summary>The next pending shard (or the finalization) for this worker, or null when there is none right now.</summary>
    Task<WorkLease?> AcquireAsync(string workerId);

    /// <summary>
    /// Extends a lease. A lease this activation does not know (the job grain moved to another silo) is adopted when its
    /// shard is not held by anyone else, so work in progress survives the move.
    /// </summary>
    Task<LeaseRenewal> RenewAsync(string leaseId, int shard, string workerId);

    /// <summary>The shard is committed (by this attempt or another): it is done and never runs again.</summary>
    Task CompleteShardAsync(string leaseId, ShardReport report);

    /// <summary>The attempt failed; the shard goes back to the queue until it has failed <see cref="JobOptions.MaxAttempts"/> times.</summary>
    Task FailAsync(string leaseId, string error);

    /// <summary>
    /// The attempt failed because the output storage is unreachable (a transient storage error that outlasted the
    /// request retries): not the shard's fault, so it goes back to the queue without counting an attempt, and the job
    /// pauses leasing with a growing backoff. When the storage stays unreachable for
    /// <see cref="JobOptions.StorageWaitSeconds"/>, the job fails with a message naming <paramref name="endpoint"/>.
    /// </summary>
    Task StorageUnavailableAsync(string leaseId, string endpoint, string error);

    /// <summary>
    /// The worker gives its lease back before it expires (its silo is stopping: SIGTERM, Ctrl+C): the shard (or the
    /// finalization) is pending again at once, without counting an attempt, so another worker takes it without waiting
    /// for the lease to expire. A lease this job does not hold any more is ignored.
    /// </summary>
    Task ReleaseAsync(string leaseId);

    Task CompleteFinalizeAsync(string leaseId, RunSummary summary);
}

/// <summary>The cluster's list of jobs; workers poll <see cref="ActiveAsync"/> for jobs with work. Key: 0.</summary>
public interface IJobRegistryGrain : IGrainWithIntegerKey
{
    Task RegisterAsync(string jobId, bool active);

    Task<string[]> ActiveAsync();

    Task<JobEntry[]> ListAsync();
}
