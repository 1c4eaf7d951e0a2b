using System.Collections.Concurrent;
using LlavaMech.Pipeline;
using LlavaMech.Storage;

namespace LlavaMech.Viewer;

/// <summary>
/// <c>/diff</c>: the served run against the other completed runs of its reanalysis root (the folder or prefix above it
/// whose <c>_runs/</c> index <c>reanalyze</c> keeps). A request names runs by their run id in that index, never by a
/// path; the comparison itself is <see cref="RunDiff"/>, computed once per pair.
/// </summary>
public sealed class RunComparisons(RunSource run)
{
    private readonly ConcurrentDictionary<(string, string), Lazy<Task<RunDiffResult>>> _cache = new();

    /// <summary>The reanalysis root above the served run, or null when the run does not lie in one.</summary>
    public string? Root { get; } = RootOf(run.Location);

    /// <summary>The completed runs of the root, oldest first (empty outside a root).</summary>
    public async Task<IReadOnlyList<RunIndexEntry>> RunsAsync(CancellationToken ct)
    {
        if (Root is null) return [];
        try
        {
            return (await Reanalysis.ListAsync(Root, ct).ConfigureAwait(false)).Where(r => r.State == "completed").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or StorageException) { return []; }
    }

    /// <summary>
    /// The diff of runs <paramref name="a"/> and <paramref name="b"/> (run ids; defaults: the completed run before the
    /// served one, and the served one). Null when either is not a completed run of the root.
    /// </summary>
    public async Task<(RunIndexEntry A, RunIndexEntry B, RunDiffResult Diff)?> CompareAsync(string? a, string? b, CancellationToken ct)
    {
        var runs = await RunsAsync(ct).ConfigureAwait(false);
        b ??= runs.Any(r => r.RunId == run.RunId) ? run.RunId : runs.LastOrDefault()?.RunId;
        a ??= runs.TakeWhile(r => r.RunId != b).LastOrDefault()?.RunId;
        if (runs.FirstOrDefault(r => r.RunId == a) is not { } ra || runs.FirstOrDefault(r => r.RunId == b) is not { } rb || Root is null) return null;
        var diff = await _cache.GetOrAdd((ra.RunId, rb.RunId), k => new Lazy<Task<RunDiffResult>>(() =>
            RunDiff.ComputeAsync(Reanalysis.RunLocation(Root, k.Item1), Reanalysis.RunLocation(Root, k.Item2), CancellationToken.None))).Value.ConfigureAwait(false);
        return (ra, rb, diff);
    }

    private static string? RootOf(string location)
    {
        var loc = OutputLocation.Parse(location);
        if (loc.Kind == OutputKind.Local)
        {
            string? parent = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(loc.LocalPath!)));
            // Only where reanalyze keeps an index: nothing is created by looking.
            return parent is not null && Directory.Exists(Path.Combine(parent, Reanalysis.IndexPrefix.TrimEnd('/'))) ? parent : null;
        }
        string text = loc.ToString().TrimEnd('/');
        int slash = text.LastIndexOf('/');
        return slash > "az://".Length && loc.Prefix.Length > 0 ? text[..slash] : null;
    }
}
