using System.Globalization;
using System.Text.Json;
using DuckDB.NET.Data;
using LlavaMech.Reports;
using LlavaMech.Storage;

namespace LlavaMech.Pipeline;

/// <summary>
/// The last step of a run, after every shard is committed: <c>head_summary</c> and <c>layer_summary</c> (Storage's
/// <see cref="Aggregates"/>), figures of them per task (<c>figures/heads_&lt;task&gt;.png</c>: mean head increase,
/// layers x heads; <c>figures/layers_&lt;task&gt;.png</c>: mean attention and FFN increase per layer), and
/// <c>summary.json</c> with counts, accuracy and the top heads, all read back from the committed parts.
/// </summary>
public static class Finalizer
{
    public const string SummaryKey = "summary.json";
    public const int TopHeadsInSummary = 5;

    /// <param name="store">the store of <paramref name="spec"/>'s output.</param>
    /// <param name="modelFingerprint">the run's <see cref="LlavaMech.Runtime.ModelFingerprint"/>, written to summary.json as <c>model_fingerprint</c>.</param>
    public static async Task<RunSummary> RunAsync(IObjectStore store, JobSpec spec, string modelFingerprint, CancellationToken ct = default)
    {
        var aggregate = new AggregateOptions { TopK = spec.Options.SummaryTopK };
        var heads = await Aggregates.HeadSummaryAsync(store, aggregate, ct).ConfigureAwait(false);
        var layers = await Aggregates.LayerSummaryAsync(store, aggregate, ct).ConfigureAwait(false);
        var files = new List<string>();
        if (heads.Count > 0) files.Add(Aggregates.HeadSummaryKey);
        if (layers.Count > 0) files.Add(Aggregates.LayerSummaryKey);

        string scratch = Path.Combine(Path.GetTempPath(), "llavamech-final-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(scratch);
        try
        {
            files.AddRange(await FiguresAsync(store, spec.RunId, heads, layers, scratch, ct).ConfigureAwait(false));
            var causal = (await Aggregates.CausalSummaryAsync(store, ct).ConfigureAwait(false))
                .Select(c => new SummaryCausal(c.Task, c.Selection, c.K, c.N, c.MeanDelta, c.DeltaLo, c.DeltaHi, c.FlipRate, c.FlipLo, c.FlipHi)).ToArray();
            var paired = (await Aggregates.CausalPairedAsync(store, ct).ConfigureAwait(false))
                .Select(c => new SummaryCausalPaired(c.Task, c.Versus, c.K, c.N, c.MeanDiff, c.DiffLo, c.DiffHi, c.ShareLogIncreaseCostsMore)).ToArray();
            var knockout = (await Aggregates.KnockoutCurveAsync(store, ct).ConfigureAwait(false))
                .Select(c => new SummaryKnockout(c.Task, c.Window, c.StartLayer, c.EndLayer, c.N, c.MeanDelta, c.DeltaLo, c.DeltaHi, c.FlipRate)).ToArray();
            files.AddRange(await CausalFiguresAsync(store, spec.RunId, causal, knockout, scratch, ct).ConfigureAwait(false));
            var parts = (await Aggregates.ImagePartSummaryAsync(store, ct).ConfigureAwait(false))
                .Select(p => new SummaryImagePart(p.Task, p.Part, p.Examples, p.MeanAttnShare, p.MeanLogIncreaseShare)).ToArray();
            if (parts.Length > 0) files.Add(await ImagePartsFigureAsync(store, spec.RunId, parts, scratch, ct).ConfigureAwait(false));

            var committer = new ShardCommitter(store);
            var manifests = await committer.CommittedManifestsAsync(ct).ConfigureAwait(false);
            var tables = manifests.SelectMany(m => m.Parts.Select(p => p.Table)).Distinct().Order(StringComparer.Ordinal)
                .ToDictionary(t => t, t => manifests.Sum(m => m.RowsOf(t)));
            var tasks = await TaskCountsAsync(store, manifests, scratch, ct).ConfigureAwait(false);
            var top = heads.Where(h => h.Outcome == "all")
                .GroupBy(h => h.Task)
                .SelectMany(g => g.OrderByDescending(h => h.Mean).ThenBy(h => h.Layer).ThenBy(h => h.Head).Take(TopHeadsInSummary))
                .Select(h => new SummaryHead(h.Task, h.Layer, h.Head, h.Mean, h.TopKShare, h.MeanAttnToImage))
                .ToArray();
            files.Add(SummaryKey);
            var summary = new RunSummary(tables.GetValueOrDefault(TableNames.Examples), tables.GetValueOrDefault(TableNames.Rejects), tasks, top, tables, files.ToArray(),
                manifests.Count, store.Location) { Causal = causal, Knockout = knockout, CausalPaired = paired, ImageParts = parts };
            await store.PutAsync(SummaryKey, JsonSerializer.SerializeToUtf8Bytes(SummaryJson(spec, modelFingerprint, summary), new JsonSerializerOptions { WriteIndented = true }), ct)
                .ConfigureAwait(false);
            return summary;
        }
        finally
        {
            try { Directory.Delete(scratch, recursive: true); } catch (IOException) { }
        }
    }

    private static async Task<List<string>> FiguresAsync(IObjectStore store, string runId, IReadOnlyList<HeadSummaryRow> heads,
        IReadOnlyList<LayerSummaryRow> layers, string scratch, CancellationToken ct)
    {
        var written = new List<string>();
        foreach (var g in heads.Where(h => h.Outcome == "all").GroupBy(h => h.Task))
        {
            int L = g.Max(h => h.Layer) + 1, H = g.Max(h => h.Head) + 1;
            var grid = new double[L, H];
            foreach (var h in g) grid[h.Layer, h.Head] = h.Mean;
            string key = $"figures/heads_{Safe(g.Key)}.png", file = Path.Combine(scratch, Path.GetFileName(key));
            HeadHeatmap.Write(file, grid, $"{runId} {g.Key}: mean head increase of log p(target), n = {g.First().NExamples}");
            await store.PutFileAsync(key, file, ct).ConfigureAwait(false);
            written.Add(key);
        }
        foreach (var g in layers.Where(l => l.Outcome == "all").GroupBy(l => l.Task))
        {
            int L = g.Max(l => l.Layer) + 1;
            var attn = new double[L];
            var ffn = new double[L];
            foreach (var l in g)
                (l.Component == Components.Attention ? attn : ffn)[l.Layer] = l.Mean;
            string key = $"figures/layers_{Safe(g.Key)}.png", file = Path.Combine(scratch, Path.GetFileName(key));
            LayerBars.Write(file, attn, ffn, $"{runId} {g.Key}: mean layer increase of log p(target), n = {g.First().NExamples}");
            await store.PutFileAsync(key, file, ct).ConfigureAwait(false);
            written.Add(key);
        }
        return written;
    }

    /// <summary>
    /// <c>figures/causal.png</c> (mean delta per selection and task, 95% t intervals as error bars) when the run has
    /// <c>causal_effects</c>; <c>figures/knockout.png</c> (mean delta per window start, one line per task and window) when
    /// it has <c>knockout_effects</c>.
    /// </summary>
    private static async Task<List<string>> CausalFiguresAsync(IObjectStore store, string runId, SummaryCausal[] causal, SummaryKnockout[] knockout,
        string scratch, CancellationToken ct)
    {
        var written = new List<string>();
        if (causal.Length > 0)
        {
            var tasks = causal.Select(c => c.Task).Distinct().ToArray();
            var selections = causal.Select(c => c.Selection).Distinct()
                .OrderBy(HeadSelections.Order).ThenBy(x => x, StringComparer.Ordinal).ToArray();
            var mean = new double[tasks.Length, selections.Length];
            var half = new double[tasks.Length, selections.Length];
            for (int t = 0; t < tasks.Length; t++)
                for (int i = 0; i < selections.Length; i++)
                {
                    var c = causal.FirstOrDefault(x => x.Task == tasks[t] && x.Selection == selections[i]);
                    (mean[t, i], half[t, i]) = c is null ? (double.NaN, 0) : (c.MeanDelta, c.DeltaHi is { } hi ? hi - c.MeanDelta : 0);
                }
            string key = "figures/causal.png", file = Path.Combine(scratch, "causal.png");
            CausalFigure.WriteSelections(file, tasks, selections, mean, half,
                $"{runId}: change of log p(target) when {causal[0].K} heads are zero-ablated (mean, 95% t interval)");
            await store.PutFileAsync(key, file, ct).ConfigureAwait(false);
            written.Add(key);
        }
        if (knockout.Length > 0)
        {
            var curves = knockout.GroupBy(k => (k.Task, k.Window)).ToDictionary(
                g => $"{g.Key.Task} (W={g.Key.Window})",
                g => (g.Select(k => (double)k.StartLayer).ToArray(), g.Select(k => k.MeanDelta).ToArray()));
            string key = "figures/knockout.png", file = Path.Combine(scratch, "knockout.png");
            CausalFigure.WriteCurves(file, curves, "first layer of the window", "mean change of log p(target)",
                $"{runId}: last:image attention knocked out in a window of layers");
            await store.PutFileAsync(key, file, ct).ConfigureAwait(false);
            written.Add(key);
        }
        return written;
    }

    /// <summary>
    /// <c>figures/image_parts.png</c> (LLaVA-NeXT): does the answer come from the thumbnail or the tiles? Per task, the mean
    /// share of the heads' image attention and of the top heads' image log-increase on the base tile, the grid and the newlines.
    /// </summary>
    private static async Task<string> ImagePartsFigureAsync(IObjectStore store, string runId, SummaryImagePart[] parts, string scratch, CancellationToken ct)
    {
        var groups = parts.Select(p => p.Task).Distinct().SelectMany(t => new[] { (t, "attention"), (t, "log-increase") }).ToArray();
        var names = parts.Select(p => p.Part).Distinct().ToArray();
        var mean = new double[groups.Length, names.Length];
        for (int g = 0; g < groups.Length; g++)
            for (int i = 0; i < names.Length; i++)
            {
                var p = parts.FirstOrDefault(x => x.Task == groups[g].Item1 && x.Part == names[i]);
                mean[g, i] = p is null ? double.NaN : groups[g].Item2 == "attention" ? p.MeanAttnShare : p.MeanLogIncreaseShare ?? double.NaN;
            }
        string key = "figures/image_parts.png", file = Path.Combine(scratch, "image_parts.png");
        CausalFigure.WriteSelections(file, groups.Select(g => $"{g.Item1} {g.Item2}").ToArray(), names, mean, new double[groups.Length, names.Length],
            $"{runId}: share of the image on each part (mean over examples and heads)", "task and measure", "share of the image");
        await store.PutFileAsync(key, file, ct).ConfigureAwait(false);
        return key;
    }

    private static string Safe(string s) => new(s.Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_').ToArray());

    /// <summary>Per task: examples, examples with an expected answer, correct ones (DuckDB over the committed examples parts).</summary>
    private static async Task<TaskSummary[]> TaskCountsAsync(IObjectStore store, IReadOnlyList<CommitManifest> manifests, string scratch, CancellationToken ct)
    {
        var keys = manifests.SelectMany(m => m.Parts.Where(p => p.Table == TableNames.Examples && p.Rows > 0)).Select(p => p.Path).ToList();
        if (keys.Count == 0) return [];
        var paths = await LocalPartsAsync(store, keys, scratch, ct).ConfigureAwait(false);
        using var db = new DuckDBConnection("DataSource=:memory:");
        await db.OpenAsync(ct).ConfigureAwait(false);
        using var cmd = db.CreateCommand();
        cmd.CommandText = $"""
            SELECT task, count(*)::BIGINT, count(correct)::BIGINT, coalesce(sum(CASE WHEN correct THEN 1 ELSE 0 END), 0)::BIGINT
            FROM read_parquet([{string.Join(", ", paths.Select(p => "'" + p.Replace("'", "''") + "'"))}])
            GROUP BY task ORDER BY task
            """;
        var result = new List<TaskSummary>();
        using var r = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await r.ReadAsync(ct).ConfigureAwait(false))
            result.Add(new TaskSummary(r.GetString(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3)));
        return result.ToArray();
    }

    /// <summary>Local files for part keys: in place for a local store, else downloaded into <paramref name="scratch"/>.</summary>
    public static async Task<List<string>> LocalPartsAsync(IObjectStore store, IReadOnlyList<string> keys, string scratch, CancellationToken ct)
    {
        var paths = new List<string>(keys.Count);
        for (int i = 0; i < keys.Count; i++)
        {
            if (store.LocalPath(keys[i]) is { } local && File.Exists(local))
            {
                paths.Add(local);
                continue;
            }
            string path = Path.Combine(scratch, $"part-{i.ToString(CultureInfo.InvariantCulture)}.parquet");
            if (!await store.DownloadToFileAsync(keys[i], path, ct).ConfigureAwait(false))
                throw new CommitIntegrityException($"committed part '{keys[i]}' is missing", store.Location);
            paths.Add(path);
        }
        return paths;
    }

    private static object SummaryJson(JobSpec spec, string modelFingerprint, RunSummary s) => new Dictionary<string, object?>
    {
        ["run_id"] = spec.RunId,
        ["model"] = spec.ModelDir,
        ["model_fingerprint"] = modelFingerprint,
        ["manifest"] = spec.ManifestPath,
        ["output"] = s.Output,
        ["finished_at"] = DateTimeOffset.UtcNow,
        ["committed_shards"] = s.CommittedShards,
        ["examples"] = s.Examples,
        ["rejects"] = s.Rejects,
        ["with_expected"] = s.WithExpected,
        ["correct"] = s.Correct,
        ["accuracy"] = s.Accuracy,
        ["tasks"] = s.Tasks.Select(t => new Dictionary<string, object?>
        {
            ["task"] = t.Task, ["examples"] = t.Examples, ["with_expected"] = t.WithExpected, ["correct"] = t.Correct, ["accuracy"] = t.Accuracy,
        }).ToArray(),
        ["top_heads"] = s.TopHeads.Select(h => new Dictionary<string, object?>
        {
            ["task"] = h.Task, ["layer"] = h.Layer, ["head"] = h.Head, ["mean_log_prob_increase"] = h.Mean, ["top_k_share"] = h.TopKShare,
            ["mean_attn_to_image"] = h.MeanAttnToImage,
        }).ToArray(),
        ["causal"] = s.Causal.Select(c => new Dictionary<string, object?>
        {
            ["task"] = c.Task, ["selection"] = c.Selection, ["k"] = c.K, ["n"] = c.N, ["mean_delta"] = c.MeanDelta,
            ["mean_delta_ci95"] = c.DeltaLo is null ? null : new[] { c.DeltaLo, c.DeltaHi }, ["flip_rate"] = c.FlipRate,
            ["flip_rate_ci95"] = new[] { c.FlipLo, c.FlipHi },
        }).ToArray(),
        ["causal_paired"] = s.CausalPaired.Select(c => new Dictionary<string, object?>
        {
            ["task"] = c.Task, ["selection"] = HeadSelections.LogIncrease, ["versus"] = c.Versus, ["k"] = c.K, ["n"] = c.N,
            ["mean_diff"] = c.MeanDiff, ["mean_diff_ci95"] = c.DiffLo is null ? null : new[] { c.DiffLo, c.DiffHi },
            ["share_log_increase_costs_more"] = c.ShareLogIncreaseCostsMore,
        }).ToArray(),
        ["knockout_curve"] = s.Knockout.Select(k => new Dictionary<string, object?>
        {
            ["task"] = k.Task, ["window"] = k.Window, ["start_layer"] = k.StartLayer, ["end_layer"] = k.EndLayer, ["n"] = k.N,
            ["mean_delta"] = k.MeanDelta, ["mean_delta_ci95"] = k.DeltaLo is null ? null : new[] { k.DeltaLo, k.DeltaHi }, ["flip_rate"] = k.FlipRate,
        }).ToArray(),
        ["image_parts"] = s.ImageParts.Select(p => new Dictionary<string, object?>
        {
            ["task"] = p.Task, ["part"] = p.Part, ["examples"] = p.Examples, ["mean_attn_share"] = p.MeanAttnShare,
            ["mean_log_increase_share"] = p.MeanLogIncreaseShare,
        }).ToArray(),
        ["intervals"] = "mean_delta_ci95, mean_diff_ci95: Student t, mean ± t(0.975, n-1)·sd/√n; flip_rate_ci95: Wilson score, 95%; " +
                        "causal_paired.mean_diff: mean over the same examples of delta(log_increase) − delta(versus), negative: the log-increase heads cost more",
        ["table_rows"] = s.Tables,
        ["files"] = s.Files,
    };
}
