using System.Text.Json;
using LlavaMech.Runtime;
using LlavaMech.Storage;

namespace LlavaMech.Pipeline;

/// <summary>One run of a reanalysis root, as its index object <c>_runs/&lt;run id&gt;.json</c> records it.</summary>
/// <param name="State">running, completed, failed or cancelled (the state the last job of the run ended in).</param>
public sealed record RunIndexEntry(
    string RunId,
    string ModelFingerprint,
    string ModelDir,
    string ManifestPath,
    string Output,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    string State,
    long? Examples = null,
    string? Error = null);

/// <summary>What <see cref="Reanalysis.PlanAsync"/> decided.</summary>
/// <param name="Existing">the run's index entry when this model was analysed into the root before (the job resumes it).</param>
/// <param name="Previous">the most recent completed run of another model in the root: what to diff the new run against.</param>
public sealed record ReanalysisPlan(JobSpec Spec, string Root, string Fingerprint, RunIndexEntry? Existing, RunIndexEntry? Previous);

/// <summary>
/// Nightly reanalysis: a root location holds one run per model version. The run id is derived from the model
/// fingerprint (<c>fp-</c> + its first 16 hex digits) and the run lives in <c>&lt;root&gt;/&lt;run id&gt;</c>, so analysing a
/// new model version starts a new run, and analysing a version again resumes its run: the shards already committed for
/// that fingerprint are skipped, only what is missing is computed. <c>&lt;root&gt;/_runs/&lt;run id&gt;.json</c> indexes
/// the runs (one object per run, so concurrent runs of different models never write the same object).
/// </summary>
public static class Reanalysis
{
    public const string IndexPrefix = "_runs/";

    public static string RunIdOf(string fingerprint) =>
        fingerprint.Length >= 16 && fingerprint.All(char.IsAsciiHexDigit)
            ? "fp-" + fingerprint[..16].ToLowerInvariant()
            : throw new ArgumentException($"'{fingerprint}' is not a model fingerprint");

    /// <summary>The output location of <paramref name="runId"/> under <paramref name="root"/> (a folder or a blob location).</summary>
    public static string RunLocation(string root, string runId) => OutputLocation.Parse(root).Child(runId);

    /// <summary>
    /// The job of <paramref name="template"/> (model, manifest, options; its run id and output are replaced) as the run of
    /// its model's fingerprint under <paramref name="root"/>, with what the index knows. Records the run as running.
    /// </summary>
    public static async Task<ReanalysisPlan> PlanAsync(JobSpec template, string root, CancellationToken ct = default)
    {
        string fingerprint = ModelFingerprint.Compute(template.ModelDir);
        string runId = RunIdOf(fingerprint);
        var spec = template with { RunId = runId, Output = RunLocation(root, runId) };
        spec.Validate();
        var store = OutputLocation.Parse(root).OpenStore();
        var runs = await ListAsync(store, ct).ConfigureAwait(false);
        var existing = runs.FirstOrDefault(r => r.RunId == runId);
        var previous = runs.Where(r => r.RunId != runId && r.State == "completed").OrderByDescending(r => r.UpdatedAt).FirstOrDefault();
        var now = DateTimeOffset.UtcNow;
        await WriteAsync(store, new RunIndexEntry(runId, fingerprint, spec.ModelDir, spec.ManifestPath, spec.Output, existing?.CreatedAt ?? now, now, "running",
            existing?.Examples), ct).ConfigureAwait(false);
        return new ReanalysisPlan(spec, root, fingerprint, existing, previous);
    }

    /// <summary>Records how the run's job ended.</summary>
    public static async Task RecordAsync(ReanalysisPlan plan, JobStatus final, CancellationToken ct = default)
    {
        var store = OutputLocation.Parse(plan.Root).OpenStore();
        var now = DateTimeOffset.UtcNow;
        await WriteAsync(store, new RunIndexEntry(plan.Spec.RunId, plan.Fingerprint, plan.Spec.ModelDir, plan.Spec.ManifestPath, plan.Spec.Output,
            plan.Existing?.CreatedAt ?? final.SubmittedAt ?? now, now, final.State.ToString().ToLowerInvariant(), final.Summary?.Examples ?? plan.Existing?.Examples,
            final.Error), ct).ConfigureAwait(false);
    }

    /// <summary>The runs of a root, oldest first.</summary>
    public static async Task<IReadOnlyList<RunIndexEntry>> ListAsync(string root, CancellationToken ct = default) =>
        await ListAsync(OutputLocation.Parse(root).OpenStore(), ct).ConfigureAwait(false);

    internal static async Task<IReadOnlyList<RunIndexEntry>> ListAsync(IObjectStore store, CancellationToken ct)
    {
        var result = new List<RunIndexEntry>();
        foreach (var o in await store.ListAllAsync(IndexPrefix, ct).ConfigureAwait(false))
        {
            if (!o.Key.EndsWith(".json", StringComparison.Ordinal)) continue;
            var bytes = await store.GetBytesAsync(o.Key, ct).ConfigureAwait(false);
            if (bytes is null) continue;
            try
            {
                if (JsonSerializer.Deserialize<RunIndexEntry>(bytes, RunRecord.Json) is { } e) result.Add(e);
            }
            catch (JsonException) { }   // not ours: ignore
        }
        return result.OrderBy(r => r.CreatedAt).ToList();
    }

    private static Task WriteAsync(IObjectStore store, RunIndexEntry entry, CancellationToken ct) =>
        store.PutAsync(IndexPrefix + entry.RunId + ".json", JsonSerializer.SerializeToUtf8Bytes(entry, RunRecord.Json), ct);
}
