using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Runtime;
using LlavaMech.Storage;

namespace LlavaMech.Pipeline;

/// <summary>One shard of a plan: accepted examples (those of one image together, in manifest order otherwise) plus the reader's rejects that fall among them.</summary>
public sealed record PlannedShard(int Index, ManifestExample[] Examples, ManifestReject[] Rejects);

/// <summary>
/// The record of a run in its output location (<c>_pipeline/run.json</c>), written by the first job of the run. A later
/// job into the same output must match it (same run id, model fingerprint, manifest content, shard size and per-example
/// options); otherwise shard numbers or rows would mean different things, and the job fails before any shard starts.
/// </summary>
public sealed record RunRecord(
    string Format,
    string RunId,
    string ModelFingerprint,
    string ModelDir,
    string ManifestPath,
    string ManifestSha256,
    int ShardSize,
    int Shards,
    int Examples,
    int ManifestRejects,
    AnalysisSettings Analysis,
    [property: JsonPropertyName("dtype")] string DType,
    DateTimeOffset CreatedAt,
    long MaxLineBytes)
{
    /// <summary>Format 2: the analysis options as one <c>analysis</c> object (the <see cref="AnalysisSettings"/> record).
    /// Format 3: shards keep the examples of one image together (<see cref="JobPlanner.Cut"/>), so a format-2 run's shard
    /// numbers hold other examples.</summary>
    public const string CurrentFormat = "llavamech-run/3";
    public const string Key = "_pipeline/run.json";

    /// <summary>Reads a stored <c>_pipeline/run.json</c> (the viewer reads the manifest path from it).</summary>
    public static RunRecord? Parse(ReadOnlySpan<byte> json) => JsonSerializer.Deserialize<RunRecord>(json, Json);

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>Why <paramref name="other"/> (a new job's record) cannot continue this run, or null when it can.</summary>
    public string? Mismatch(RunRecord other, string location)
    {
        var diffs = new List<string>();
        void Check<T>(string what, T mine, T theirs)
        {
            if (!EqualityComparer<T>.Default.Equals(mine, theirs)) diffs.Add($"{what} {Show(theirs)} (the run has {Show(mine)})");
        }
        static string Show<T>(T v) => v is null ? "none" : v is string s ? $"'{s}'" : $"{v}";
        if (RunId != other.RunId)
            return $"output {location} holds run '{RunId}', not '{other.RunId}': one output location holds one run; " +
                   $"use --run-id {RunId} to resume it, or another --out";
        if (Format != other.Format || Analysis is null)
            return $"output {location} holds run '{RunId}' recorded in format '{Format}' by another version of llavamech (this one writes " +
                   $"'{other.Format}'); its rows may not mean the same: use another --out for a new run";
        Check("model fingerprint", ModelFingerprint, other.ModelFingerprint);
        Check("manifest sha256", ManifestSha256, other.ManifestSha256);
        Check("shard size", ShardSize, other.ShardSize);
        diffs.AddRange(Settings.Differences(Analysis, other.Analysis, "the run has"));
        Check("dtype", DType, other.DType);
        Check("max line bytes", MaxLineBytes, other.MaxLineBytes);
        return diffs.Count == 0
            ? null
            : $"run '{RunId}' in {location} was started with other inputs; a resumed run must keep them: {string.Join("; ", diffs)}. Use another --out for a new run";
    }
}

/// <summary>A prepared job: the validated checkpoint, the shards, and which of them are committed already.</summary>
public sealed record JobPlan(
    CheckpointSummary Checkpoint,
    IReadOnlyList<PlannedShard> Shards,
    IReadOnlySet<int> Committed,
    int Examples,
    int ManifestRejects,
    RunRecord Run)
{
    /// <summary>
    /// Validates the checkpoint, reads the manifest (bad lines become rejects, never errors), cuts the shards, and
    /// reconciles with the output: writes <c>_pipeline/run.json</c> for a new run or checks it for a resumed one,
    /// and lists the committed shards. Throws <see cref="JobPreparationException"/> with the reason.
    /// </summary>
    public static Task<JobPlan> PrepareAsync(JobSpec spec, CancellationToken ct = default) => PrepareAsync(spec, null, ct);

    /// <summary>As <see cref="PrepareAsync(JobSpec, CancellationToken)"/>, with the output's store from <paramref name="stores"/> (a silo's; null: a new store).</summary>
    public static async Task<JobPlan> PrepareAsync(JobSpec spec, ObjectStores? stores, CancellationToken ct = default)
    {
        spec.Validate();
        CheckpointSummary checkpoint;
        try
        {
            checkpoint = CheckpointValidator.Validate(spec.ModelDir);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new JobPreparationException($"checkpoint validation failed: {e.Message}", e);
        }
        try
        {
            spec.Options.Analysis.CheckModel(checkpoint.Layers, checkpoint.Heads);
        }
        catch (ArgumentException e)
        {
            throw new JobPreparationException(e.Message, e);
        }

        ManifestReadResult manifest;
        try
        {
            // Streamed with a bounded line: one huge line or a binary file cannot exhaust memory (ManifestLimits).
            manifest = ManifestReader.Read(spec.ManifestPath, spec.Options.ToManifestLimits());
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new JobPreparationException($"cannot read manifest '{spec.ManifestPath}': {e.Message}", e);
        }
        if (manifest.Examples.Count == 0 && manifest.Rejects.Count == 0)
            throw new JobPreparationException($"manifest '{manifest.ManifestPath}' has no lines");

        var shards = Cut(manifest, spec.Options.ShardSize);
        var o = spec.Options;
        var record = new RunRecord(RunRecord.CurrentFormat, spec.RunId, checkpoint.Fingerprint, checkpoint.ModelDir, manifest.ManifestPath,
            manifest.Sha256, o.ShardSize, shards.Count, manifest.Examples.Count, manifest.Rejects.Count,
            o.Analysis, o.DType, DateTimeOffset.UtcNow, o.MaxLineBytes);

        IObjectStore store;
        try
        {
            store = stores is null ? OutputLocation.Parse(spec.Output).OpenStore() : stores.Open(spec.Output);
        }
        catch (ArgumentException e)
        {
            throw new JobPreparationException($"output location: {e.Message}", e);
        }
        var run = await ReconcileAsync(store, record, ct).ConfigureAwait(false);
        var committer = new ShardCommitter(store);
        await committer.RepairAsync(null, ct).ConfigureAwait(false);   // publish commits a crash interrupted (TABLES.md)
        var committed = (await committer.CommittedShardsAsync(ct).ConfigureAwait(false)).Where(s => s < shards.Count).ToHashSet();
        return new JobPlan(checkpoint, shards, committed, manifest.Examples.Count, manifest.Rejects.Count, run);
    }

    /// <summary>
    /// Examples in manifest order, <paramref name="shardSize"/> per shard, except that the examples of one image stay
    /// together, so that one shard runs the image (and the prompt text before the question) once for all its questions
    /// (<see cref="AnalysisSettings.PrefixReuse"/>): the examples of an image join the shard of its first example, and a shard
    /// closes early when the next image's examples would overflow it (an image with more than <paramref name="shardSize"/>
    /// examples is cut into full shards). Text-only examples stay in place. Each reject goes with the shard of the next
    /// accepted example after it (the last shard for trailing rejects), so shard contents depend only on the manifest.
    /// </summary>
    public static List<PlannedShard> Cut(ManifestReadResult manifest, int shardSize)
    {
        var examples = manifest.Examples;
        // Units in the order of their first example: all examples of one image, or one text-only example.
        var units = new List<List<ManifestExample>>();
        var byImage = new Dictionary<string, List<ManifestExample>>(StringComparer.Ordinal);
        foreach (var e in examples)
        {
            if (e.ImagePath is { } image && byImage.TryGetValue(image, out var unit)) { unit.Add(e); continue; }
            units.Add(unit = [e]);
            if (e.ImagePath is { } key) byImage[key] = unit;
        }
        var ex = new List<List<ManifestExample>> { new() };
        foreach (var unit in units)
            for (int i = 0; i < unit.Count; )
            {
                var current = ex[^1];
                if (current.Count > 0 && current.Count + Math.Min(unit.Count - i, shardSize) > shardSize) { ex.Add(current = []); }
                int take = Math.Min(unit.Count - i, shardSize - current.Count);
                current.AddRange(unit.Skip(i).Take(take));
                i += take;
            }
        int count = ex.Count;
        var shardOf = new Dictionary<int, int>();   // accepted example line -> shard
        for (int s = 0; s < count; s++) foreach (var e in ex[s]) shardOf[e.Line] = s;
        var rej = new List<ManifestReject>[count];
        for (int s = 0; s < count; s++) rej[s] = [];
        int next = 0;   // index of the first accepted example after the reject
        foreach (var r in manifest.Rejects.OrderBy(r => r.Line))
        {
            while (next < examples.Count && examples[next].Line < r.Line) next++;
            int shard = next < examples.Count ? shardOf[examples[next].Line] : count - 1;
            rej[shard].Add(r);
        }
        return Enumerable.Range(0, count).Select(s => new PlannedShard(s, ex[s].ToArray(), rej[s].ToArray())).ToList();
    }

    private static async Task<RunRecord> ReconcileAsync(IObjectStore store, RunRecord record, CancellationToken ct)
    {
        for (int attempt = 0; attempt < 3; attempt++)
        {
            var bytes = await store.GetBytesAsync(RunRecord.Key, ct).ConfigureAwait(false);
            if (bytes is not null)
            {
                RunRecord existing;
                try
                {
                    existing = JsonSerializer.Deserialize<RunRecord>(bytes, RunRecord.Json)
                               ?? throw new JsonException("empty document");
                }
                catch (JsonException e)
                {
                    throw new JobPreparationException($"{store.Location}/{RunRecord.Key} is not a valid run record: {e.Message}", e);
                }
                if (existing.Mismatch(record, store.Location) is { } why) throw new JobPreparationException(why);
                return existing;
            }
            if (await store.PutIfAbsentAsync(RunRecord.Key, JsonSerializer.SerializeToUtf8Bytes(record, RunRecord.Json), ct).ConfigureAwait(false))
                return record;
        }
        throw new JobPreparationException($"cannot create {store.Location}/{RunRecord.Key}");
    }
}

/// <summary>A job cannot start: bad checkpoint, unreadable manifest, output of another run. The message says which.</summary>
public sealed class JobPreparationException(string message, Exception? inner = null) : Exception(message, inner);
