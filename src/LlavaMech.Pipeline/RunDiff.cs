using System.Globalization;
using System.Text;
using System.Text.Json;
using DuckDB.NET.Data;
using LlavaMech.Reports;
using LlavaMech.Storage;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Pipeline;

/// <summary>A head of both runs: mean log-prob increase over the examples they share, and its importance rank in each.</summary>
/// <param name="Diff">B − A.</param>
/// <param name="RankA">1 = the head with the largest mean increase in A (within the task; ties by layer, head).</param>
/// <param name="RankChange">RankA − RankB: positive when the head is more important in B.</param>
[Table("head_diff")]
public sealed record HeadDiffRow(string Task, int Layer, int Head, double MeanA, double MeanB, double Diff, int RankA, int RankB, int RankChange);

/// <summary>A layer block (attn or ffn) of both runs, as <see cref="HeadDiffRow"/>.</summary>
[Table("layer_diff")]
public sealed record LayerDiffRow(string Task, int Layer, string Component, double MeanA, double MeanB, double Diff, int RankA, int RankB, int RankChange);

/// <summary>How much a layer's heads moved: mean and largest |B − A| over its heads.</summary>
public sealed record LayerChange(string Task, int Layer, double MeanAbsHeadDiff, double MaxAbsHeadDiff, int MaxHead, double AttnDiff, double FfnDiff);

/// <summary>One task of the diff.</summary>
/// <param name="Examples">examples present in both runs (the means are over these).</param>
/// <param name="SpearmanHeads">Spearman rank correlation of the head means of A and B (average ranks for ties).</param>
/// <param name="SpearmanLayers">the same over the layer blocks.</param>
/// <param name="TopKJaccard">overlap (Jaccard) of the top-k heads of A and B.</param>
public sealed record TaskDiff(string Task, long Examples, double SpearmanHeads, double SpearmanLayers, int TopK, double TopKJaccard);

/// <summary>
/// A (task, selection, k) group of <c>causal_effects</c> in both runs: mean delta and flip rate in A and in B over the
/// examples both runs hold; <paramref name="Diff"/> = MeanB − MeanA.
/// </summary>
public sealed record CausalDiffRow(string Task, string Selection, int K, long Examples, double MeanA, double MeanB, double Diff, double FlipRateA, double FlipRateB);

/// <summary>A (task, window, start layer) point of the knockout curve in both runs, as <see cref="CausalDiffRow"/>.</summary>
public sealed record KnockoutDiffRow(string Task, int Window, int StartLayer, long Examples, double MeanA, double MeanB, double Diff);

/// <summary>A run that takes part in a diff.</summary>
public sealed record DiffSide(string Location, string RunId, string ModelFingerprint, long Examples);

public sealed record RunDiffResult(DiffSide A, DiffSide B, IReadOnlyList<TaskDiff> Tasks, IReadOnlyList<HeadDiffRow> Heads, IReadOnlyList<LayerDiffRow> Layers,
    IReadOnlyList<LayerChange> LayerChanges)
{
    /// <summary>causal_effects of both runs (empty unless both have them).</summary>
    public IReadOnlyList<CausalDiffRow> Causal { get; init; } = [];

    /// <summary>knockout_effects of both runs (empty unless both have them).</summary>
    public IReadOnlyList<KnockoutDiffRow> Knockout { get; init; } = [];

    /// <summary>Heads by |B − A|, largest first.</summary>
    public IEnumerable<HeadDiffRow> MostChangedHeads(string task) =>
        Heads.Where(h => h.Task == task).OrderByDescending(h => Math.Abs(h.Diff)).ThenBy(h => h.Layer).ThenBy(h => h.Head);

    /// <summary>Layers by the mean |B − A| of their heads, largest first.</summary>
    public IEnumerable<LayerChange> MostChangedLayers(string task) =>
        LayerChanges.Where(l => l.Task == task).OrderByDescending(l => l.MeanAbsHeadDiff).ThenBy(l => l.Layer);
}

/// <summary>
/// Which heads and layers changed importance between two runs (e.g. two model versions over the same dataset): per
/// task, the mean log-prob increase of every head and layer block in A and in B over the examples both runs hold,
/// the difference B − A, the rank change, and the Spearman correlation of head importance. Reads the committed parts
/// of examples, head_stats and layer_stats (downloaded first for a blob location) with DuckDB.
/// </summary>
public static class RunDiff
{
    public const int TopK = 10;

    public static async Task<RunDiffResult> ComputeAsync(string a, string b, CancellationToken ct = default)
    {
        string scratch = Path.Combine(Path.GetTempPath(), "llavamech-diff-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(scratch);
        try
        {
            using var db = new DuckDBConnection("DataSource=:memory:");
            await db.OpenAsync(ct).ConfigureAwait(false);
            var sideA = await LoadAsync(db, a, "a", Path.Combine(scratch, "a"), ct).ConfigureAwait(false);
            var sideB = await LoadAsync(db, b, "b", Path.Combine(scratch, "b"), ct).ConfigureAwait(false);
            Exec(db, """
                CREATE TEMP TABLE common AS
                SELECT example_id, task FROM (SELECT DISTINCT example_id, task FROM examples_a)
                INTERSECT SELECT example_id, task FROM (SELECT DISTINCT example_id, task FROM examples_b)
                """);
            var counts = Rows(db, "SELECT task, count(*) FROM common GROUP BY task ORDER BY task").ToDictionary(r => (string)r[0]!, r => Convert.ToInt64(r[1]));
            if (counts.Count == 0)
                throw new InvalidOperationException($"runs {sideA.Location} and {sideB.Location} share no example (same example_id and task): nothing to compare");

            var heads = new List<HeadDiffRow>();
            var layers = new List<LayerDiffRow>();
            var changes = new List<LayerChange>();
            var tasks = new List<TaskDiff>();
            foreach (var task in counts.Keys)
            {
                var ha = HeadMeans(db, "a", task);
                var hb = HeadMeans(db, "b", task);
                var keys = ha.Keys.Intersect(hb.Keys).OrderBy(k => k.Layer).ThenBy(k => k.Head).ToList();
                var rankA = Ranks(keys, k => ha[k]);
                var rankB = Ranks(keys, k => hb[k]);
                var taskHeads = keys.Select(k => new HeadDiffRow(task, k.Layer, k.Head, ha[k], hb[k], hb[k] - ha[k], rankA[k], rankB[k], rankA[k] - rankB[k])).ToList();
                heads.AddRange(taskHeads);

                var la = LayerMeans(db, "a", task);
                var lb = LayerMeans(db, "b", task);
                var lkeys = la.Keys.Intersect(lb.Keys).OrderBy(k => k.Layer).ThenBy(k => k.Component, StringComparer.Ordinal).ToList();
                var lrA = Ranks(lkeys, k => la[k]);
                var lrB = Ranks(lkeys, k => lb[k]);
                layers.AddRange(lkeys.Select(k => new LayerDiffRow(task, k.Layer, k.Component, la[k], lb[k], lb[k] - la[k], lrA[k], lrB[k], lrA[k] - lrB[k])));

                foreach (var g in taskHeads.GroupBy(h => h.Layer).OrderBy(g => g.Key))
                {
                    var max = g.OrderByDescending(h => Math.Abs(h.Diff)).ThenBy(h => h.Head).First();
                    double Block(string c) => la.TryGetValue((g.Key, c), out var x) && lb.TryGetValue((g.Key, c), out var y) ? y - x : double.NaN;
                    changes.Add(new LayerChange(task, g.Key, g.Average(h => Math.Abs(h.Diff)), Math.Abs(max.Diff), max.Head, Block(Components.Attention), Block(Components.Ffn)));
                }

                var topA = taskHeads.OrderBy(h => h.RankA).Take(TopK).Select(h => (h.Layer, h.Head)).ToHashSet();
                var topB = taskHeads.OrderBy(h => h.RankB).Take(TopK).Select(h => (h.Layer, h.Head)).ToHashSet();
                double jaccard = Correlation.Jaccard(topA, topB);
                tasks.Add(new TaskDiff(task, counts[task], Correlation.Spearman(taskHeads.Select(h => h.MeanA).ToArray(), taskHeads.Select(h => h.MeanB).ToArray()),
                    Correlation.Spearman(lkeys.Select(k => la[k]).ToArray(), lkeys.Select(k => lb[k]).ToArray()), Math.Min(TopK, taskHeads.Count), jaccard));
            }
            return new RunDiffResult(sideA, sideB, tasks, heads, layers, changes) { Causal = CausalDiff(db), Knockout = KnockoutDiff(db) };
        }
        finally
        {
            try { Directory.Delete(scratch, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// The diff for people: per task the shared examples, the Spearman correlations and top-k overlap, the layer and the
    /// <paramref name="top"/> heads that changed most; the interventions' changes; the files written.
    /// </summary>
    public static IEnumerable<string> Describe(RunDiffResult r, IReadOnlyList<string> files, string nameA, string nameB, int top = 5)
    {
        yield return $"diff         {nameB} ({r.B.RunId}, {r.B.Examples} examples) vs {nameA} ({r.A.RunId}, {r.A.Examples} examples)";
        foreach (var t in r.Tasks)
        {
            var layer = r.MostChangedLayers(t.Task).First();
            yield return $"{t.Task,-12} {t.Examples} shared examples; Spearman of head importance {t.SpearmanHeads:0.000}, of layer blocks {t.SpearmanLayers:0.000}; " +
                         $"top-{t.TopK} heads overlap {t.TopKJaccard:0.00}";
            yield return $"             layer that changed most: {layer.Layer} (mean |head diff| {layer.MeanAbsHeadDiff:0.0000}, " +
                         $"attn block {SignedNumber.Format(layer.AttnDiff)}, ffn block {SignedNumber.Format(layer.FfnDiff)})";
            yield return "             heads that changed most: " + string.Join("  ", r.MostChangedHeads(t.Task).Take(top).Select(h =>
                string.Create(CultureInfo.InvariantCulture, $"L{h.Layer}H{h.Head} {SignedNumber.Format(h.MeanA)} -> {SignedNumber.Format(h.MeanB)} (rank {h.RankA} -> {h.RankB})")));
        }
        foreach (var c in r.Causal)
            yield return string.Create(CultureInfo.InvariantCulture,
                $"causal       {c.Task} {c.Selection} k={c.K}: mean delta {SignedNumber.Format(c.MeanA)} -> {SignedNumber.Format(c.MeanB)}, flips {c.FlipRateA:P0} -> {c.FlipRateB:P0} ({c.Examples} shared examples)");
        foreach (var g in r.Knockout.GroupBy(k => (k.Task, k.Window)))
            yield return $"knockout     {g.Key.Task} W={g.Key.Window}: " + string.Join("  ", g.Select(k => $"L{k.StartLayer} {SignedNumber.Format(k.MeanA)} -> {SignedNumber.Format(k.MeanB)}"));
        yield return $"files        {string.Join(", ", files)}";
    }

    /// <summary>
    /// Writes <c>head_diff.parquet</c>, <c>layer_diff.parquet</c>, <c>diff.md</c>, <c>diff.json</c> and one heatmap of
    /// B − A per task (<c>heads_diff_&lt;task&gt;.png</c>, red where B is higher) into <paramref name="outDir"/>; returns the files.
    /// </summary>
    public static async Task<IReadOnlyList<string>> WriteAsync(RunDiffResult r, string outDir, string nameA = "A", string nameB = "B")
    {
        Directory.CreateDirectory(outDir);
        var files = new List<string>();
        files.Add(await RowFile.WriteAsync(r.Heads, outDir).ConfigureAwait(false));
        files.Add(await RowFile.WriteAsync(r.Layers, outDir).ConfigureAwait(false));

        foreach (var t in r.Tasks)
        {
            var hs = r.Heads.Where(h => h.Task == t.Task).ToList();
            int L = hs.Max(h => h.Layer) + 1, H = hs.Max(h => h.Head) + 1;
            var ga = new double[L, H];
            var gb = new double[L, H];
            foreach (var h in hs) { ga[h.Layer, h.Head] = h.MeanA; gb[h.Layer, h.Head] = h.MeanB; }
            string png = Path.Combine(outDir, $"heads_diff_{Safe(t.Task)}.png");
            DiffHeatmap.Write(png, gb, ga, nameB, nameA,
                $"{t.Task}: head importance {nameB} \u2212 {nameA} (red: higher in {nameB}), n = {t.Examples}, Spearman {t.SpearmanHeads:0.000}",
                "difference of mean log-probability increase (nats)");
            files.Add(png);
        }

        string md = Path.Combine(outDir, "diff.md");
        await File.WriteAllTextAsync(md, Markdown(r, nameA, nameB)).ConfigureAwait(false);
        files.Add(md);
        string json = Path.Combine(outDir, "diff.json");
        await File.WriteAllBytesAsync(json, JsonSerializer.SerializeToUtf8Bytes(Json(r), new JsonSerializerOptions { WriteIndented = true })).ConfigureAwait(false);
        files.Add(json);
        return files;
    }

    public static string Markdown(RunDiffResult r, string nameA = "A", string nameB = "B", int top = 15)
    {
        static string F(double v) => double.IsNaN(v) ? "" : SignedNumber.Format(v, 5);
        static string G(double v) => v.ToString("0.00000", CultureInfo.InvariantCulture);
        var sb = new StringBuilder();
        sb.AppendLine($"# Head and layer importance: {nameB} vs {nameA}");
        sb.AppendLine();
        sb.AppendLine(MarkdownTable.Render(["run", "location", "run id", "model fingerprint", "examples"],
        [
            [nameA, r.A.Location, r.A.RunId, r.A.ModelFingerprint[..Math.Min(16, r.A.ModelFingerprint.Length)], r.A.Examples.ToString(CultureInfo.InvariantCulture)],
            [nameB, r.B.Location, r.B.RunId, r.B.ModelFingerprint[..Math.Min(16, r.B.ModelFingerprint.Length)], r.B.Examples.ToString(CultureInfo.InvariantCulture)],
        ]));
        sb.AppendLine();
        sb.AppendLine($"Means of the log-probability increase over the examples both runs hold; diff = {nameB} − {nameA}; rank 1 = most important " +
                      $"head of the task; rank change = rank in {nameA} − rank in {nameB} (positive: more important in {nameB}).");
        sb.AppendLine();
        sb.AppendLine(MarkdownTable.Render(["task", "examples", "Spearman (heads)", "Spearman (layer blocks)", $"top-{TopK} heads Jaccard"],
            r.Tasks.Select(t => (IReadOnlyList<string>)[t.Task, t.Examples.ToString(CultureInfo.InvariantCulture), t.SpearmanHeads.ToString("0.000", CultureInfo.InvariantCulture),
                t.SpearmanLayers.ToString("0.000", CultureInfo.InvariantCulture), t.TopKJaccard.ToString("0.00", CultureInfo.InvariantCulture)])));
        if (r.Causal.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine($"Head ablations (causal_effects): mean change of log p(target) when the selection's k heads are zero-ablated, over the examples both runs hold; diff = {nameB} − {nameA}.");
            sb.AppendLine();
            sb.AppendLine(MarkdownTable.Render(["task", "selection", "k", "examples", $"mean delta {nameA}", $"mean delta {nameB}", "diff", $"flip rate {nameA}", $"flip rate {nameB}"],
                r.Causal.Select(c => (IReadOnlyList<string>)[c.Task, c.Selection, c.K.ToString(CultureInfo.InvariantCulture), c.Examples.ToString(CultureInfo.InvariantCulture),
                    F(c.MeanA), F(c.MeanB), F(c.Diff), c.FlipRateA.ToString("0.000", CultureInfo.InvariantCulture), c.FlipRateB.ToString("0.000", CultureInfo.InvariantCulture)])));
        }
        if (r.Knockout.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine($"Knockout curve (knockout_effects): mean change of log p(target) with last:image knocked out in layers start..start+W−1; diff = {nameB} − {nameA}.");
            sb.AppendLine();
            sb.AppendLine(MarkdownTable.Render(["task", "window", "start layer", "examples", $"mean delta {nameA}", $"mean delta {nameB}", "diff"],
                r.Knockout.Select(k => (IReadOnlyList<string>)[k.Task, k.Window.ToString(CultureInfo.InvariantCulture), k.StartLayer.ToString(CultureInfo.InvariantCulture),
                    k.Examples.ToString(CultureInfo.InvariantCulture), F(k.MeanA), F(k.MeanB), F(k.Diff)])));
        }
        foreach (var t in r.Tasks)
        {
            sb.AppendLine();
            sb.AppendLine($"## {t.Task}");
            sb.AppendLine();
            sb.AppendLine("Layers by how much their heads changed:");
            sb.AppendLine();
            sb.AppendLine(MarkdownTable.Render(["layer", "mean abs head diff", "max abs head diff", "head", "attn block diff", "ffn block diff"],
                r.MostChangedLayers(t.Task).Select(l => (IReadOnlyList<string>)[l.Layer.ToString(CultureInfo.InvariantCulture), G(l.MeanAbsHeadDiff), G(l.MaxAbsHeadDiff),
                    l.MaxHead.ToString(CultureInfo.InvariantCulture), F(l.AttnDiff), F(l.FfnDiff)])));
            sb.AppendLine();
            sb.AppendLine($"Heads that changed most (top {top} by abs diff):");
            sb.AppendLine();
            sb.AppendLine(MarkdownTable.Render(["layer", "head", $"mean {nameA}", $"mean {nameB}", "diff", $"rank {nameA}", $"rank {nameB}", "rank change"],
                r.MostChangedHeads(t.Task).Take(top).Select(h => (IReadOnlyList<string>)[h.Layer.ToString(CultureInfo.InvariantCulture), h.Head.ToString(CultureInfo.InvariantCulture),
                    F(h.MeanA), F(h.MeanB), F(h.Diff), h.RankA.ToString(CultureInfo.InvariantCulture), h.RankB.ToString(CultureInfo.InvariantCulture),
                    h.RankChange.ToString("+0;-0;0", CultureInfo.InvariantCulture)])));
            sb.AppendLine();
            sb.AppendLine("Layer blocks:");
            sb.AppendLine();
            sb.AppendLine(MarkdownTable.Render(["layer", "block", $"mean {nameA}", $"mean {nameB}", "diff", $"rank {nameA}", $"rank {nameB}", "rank change"],
                r.Layers.Where(l => l.Task == t.Task).Select(l => (IReadOnlyList<string>)[l.Layer.ToString(CultureInfo.InvariantCulture), l.Component, F(l.MeanA), F(l.MeanB),
                    F(l.Diff), l.RankA.ToString(CultureInfo.InvariantCulture), l.RankB.ToString(CultureInfo.InvariantCulture),
                    l.RankChange.ToString("+0;-0;0", CultureInfo.InvariantCulture)])));
            sb.AppendLine();
            sb.AppendLine($"![head importance {nameB} − {nameA}](heads_diff_{Safe(t.Task)}.png)");
        }
        return sb.ToString();
    }

    private static object Json(RunDiffResult r) => new Dictionary<string, object?>
    {
        ["a"] = r.A,
        ["b"] = r.B,
        ["causal"] = r.Causal.Select(c => new Dictionary<string, object?>
        {
            ["task"] = c.Task, ["selection"] = c.Selection, ["k"] = c.K, ["examples"] = c.Examples, ["mean_delta_a"] = c.MeanA, ["mean_delta_b"] = c.MeanB,
            ["diff"] = c.Diff, ["flip_rate_a"] = c.FlipRateA, ["flip_rate_b"] = c.FlipRateB,
        }).ToArray(),
        ["knockout_curve"] = r.Knockout.Select(k => new Dictionary<string, object?>
        {
            ["task"] = k.Task, ["window"] = k.Window, ["start_layer"] = k.StartLayer, ["examples"] = k.Examples, ["mean_delta_a"] = k.MeanA,
            ["mean_delta_b"] = k.MeanB, ["diff"] = k.Diff,
        }).ToArray(),
        ["tasks"] = r.Tasks.Select(t => new Dictionary<string, object?>
        {
            ["task"] = t.Task,
            ["examples"] = t.Examples,
            ["spearman_heads"] = t.SpearmanHeads,
            ["spearman_layers"] = t.SpearmanLayers,
            ["top_k"] = t.TopK,
            ["top_k_jaccard"] = t.TopKJaccard,
            ["layers_by_change"] = r.MostChangedLayers(t.Task).Select(l => new Dictionary<string, object?>
            {
                ["layer"] = l.Layer, ["mean_abs_head_diff"] = l.MeanAbsHeadDiff, ["max_abs_head_diff"] = l.MaxAbsHeadDiff, ["max_head"] = l.MaxHead,
                ["attn_diff"] = double.IsNaN(l.AttnDiff) ? null : l.AttnDiff, ["ffn_diff"] = double.IsNaN(l.FfnDiff) ? null : l.FfnDiff,
            }).ToArray(),
            ["heads_by_change"] = r.MostChangedHeads(t.Task).Take(TopK).Select(h => new Dictionary<string, object?>
            {
                ["layer"] = h.Layer, ["head"] = h.Head, ["mean_a"] = h.MeanA, ["mean_b"] = h.MeanB, ["diff"] = h.Diff,
                ["rank_a"] = h.RankA, ["rank_b"] = h.RankB, ["rank_change"] = h.RankChange,
            }).ToArray(),
        }).ToArray(),
    };

    private static bool BothHave(DuckDBConnection db, string table) =>
        Convert.ToInt64(Rows(db, $"SELECT count(*) FROM duckdb_views() WHERE view_name IN ('{table}_a', '{table}_b')")[0][0]) == 2;

    /// <summary>Mean delta and flip rate per task, selection and k in A and B over the shared examples (when both runs have causal_effects).</summary>
    private static List<CausalDiffRow> CausalDiff(DuckDBConnection db)
    {
        if (!BothHave(db, TableNames.CausalEffects)) return [];
        return Rows(db, $"""
            WITH a AS (SELECT x.* FROM {TableNames.CausalEffects}_a x JOIN common c USING (example_id, task)),
                 b AS (SELECT x.* FROM {TableNames.CausalEffects}_b x JOIN common c USING (example_id, task))
            SELECT a.task, a.selection, a.k, count(*), avg(a.delta), avg(b.delta), avg(a.flipped::INTEGER), avg(b.flipped::INTEGER)
            FROM a JOIN b USING (example_id, task, selection, k)
            GROUP BY a.task, a.selection, a.k ORDER BY a.task, a.k
            """).Select(r => new CausalDiffRow((string)r[0]!, (string)r[1]!, Convert.ToInt32(r[2]), Convert.ToInt64(r[3]), Convert.ToDouble(r[4]),
                Convert.ToDouble(r[5]), Convert.ToDouble(r[5]) - Convert.ToDouble(r[4]), Convert.ToDouble(r[6]), Convert.ToDouble(r[7])))
            .OrderBy(r => r.Task, StringComparer.Ordinal).ThenBy(r => HeadSelections.Order(r.Selection))
            .ThenBy(r => r.Selection, StringComparer.Ordinal).ThenBy(r => r.K).ToList();
    }

    /// <summary>Mean delta per task, window and start layer in A and B over the shared examples (when both runs have knockout_effects).</summary>
    private static List<KnockoutDiffRow> KnockoutDiff(DuckDBConnection db)
    {
        if (!BothHave(db, TableNames.KnockoutEffects)) return [];
        return Rows(db, $"""
            WITH a AS (SELECT x.* FROM {TableNames.KnockoutEffects}_a x JOIN common c USING (example_id, task)),
                 b AS (SELECT x.* FROM {TableNames.KnockoutEffects}_b x JOIN common c USING (example_id, task))
            SELECT a.task, a.window_size, a.start_layer, count(*), avg(a.delta), avg(b.delta)
            FROM a JOIN b USING (example_id, task, window_size, start_layer)
            GROUP BY a.task, a.window_size, a.start_layer ORDER BY a.task, a.window_size, a.start_layer
            """).Select(r => new KnockoutDiffRow((string)r[0]!, Convert.ToInt32(r[1]), Convert.ToInt32(r[2]), Convert.ToInt64(r[3]), Convert.ToDouble(r[4]),
                Convert.ToDouble(r[5]), Convert.ToDouble(r[5]) - Convert.ToDouble(r[4]))).ToList();
    }

    /// <summary>1-based ranks by value, largest first; ties by key order.</summary>
    private static Dictionary<T, int> Ranks<T>(IReadOnlyList<T> keys, Func<T, double> value) where T : notnull =>
        keys.Select((k, i) => (k, i)).OrderByDescending(x => value(x.k)).ThenBy(x => x.i).Select((x, r) => (x.k, r)).ToDictionary(x => x.k, x => x.r + 1);

    private static Dictionary<(int Layer, int Head), double> HeadMeans(DuckDBConnection db, string side, string task) =>
        Rows(db, $"""
            SELECT h.layer, h.head, avg(h.log_prob_increase) FROM head_stats_{side} h JOIN common c USING (example_id)
            WHERE c.task = '{task.Replace("'", "''")}' GROUP BY h.layer, h.head
            """).ToDictionary(r => (Convert.ToInt32(r[0]), Convert.ToInt32(r[1])), r => Convert.ToDouble(r[2]));

    private static Dictionary<(int Layer, string Component), double> LayerMeans(DuckDBConnection db, string side, string task) =>
        Rows(db, $"""
            SELECT l.layer, l.component, avg(l.log_prob_increase) FROM layer_stats_{side} l JOIN common c USING (example_id)
            WHERE c.task = '{task.Replace("'", "''")}' GROUP BY l.layer, l.component
            """).ToDictionary(r => (Convert.ToInt32(r[0]), (string)r[1]!), r => Convert.ToDouble(r[2]));

    /// <summary>
    /// Views examples_/head_stats_/layer_stats_&lt;side&gt; over a run's committed parts. A reanalysis root (no shards of its
    /// own, runs indexed under <c>_runs/</c>) stands for its most recently completed run.
    /// </summary>
    private static async Task<DiffSide> LoadAsync(DuckDBConnection db, string location, string side, string scratch, CancellationToken ct, bool resolved = false)
    {
        IObjectStore store;
        try
        {
            store = OutputLocation.Parse(location).OpenStore(createFolder: false);
        }
        catch (DirectoryNotFoundException e) { throw new ArgumentException($"run {e.Message}", e); }
        catch (ArgumentException e) { throw new ArgumentException($"run {location}: {e.Message}", e); }
        var committer = new ShardCommitter(store);
        var manifests = await committer.CommittedManifestsAsync(ct).ConfigureAwait(false);
        if (manifests.Count == 0 && !resolved)
        {
            var runs = await Reanalysis.ListAsync(store, ct).ConfigureAwait(false);
            if (runs.Where(r => r.State == "completed").OrderByDescending(r => r.UpdatedAt).FirstOrDefault() is { } latest)
                return await LoadAsync(db, Reanalysis.RunLocation(location, latest.RunId), side, scratch, ct, resolved: true).ConfigureAwait(false);
            if (runs.Count > 0)
                throw new ArgumentException($"{store.Location} is a reanalysis root without a completed run ({string.Join(", ", runs.Select(r => $"{r.RunId}: {r.State}"))})");
        }
        if (manifests.Count == 0)
            throw new ArgumentException($"{store.Location} holds no committed shard: not the output of a pipeline run (run, reanalyze, submit) nor a reanalysis root");
        if (manifests.Select(m => m.ModelFingerprint).Distinct().Count() > 1)
            throw new InvalidOperationException($"{store.Location} holds shards of several models");
        Directory.CreateDirectory(scratch);
        foreach (var table in new[] { TableNames.Examples, TableNames.HeadStats, TableNames.LayerStats })
        {
            var keys = manifests.SelectMany(m => m.Parts.Where(p => p.Table == table && p.Rows > 0)).Select(p => p.Path).ToList();
            if (keys.Count == 0) throw new ArgumentException($"{store.Location} has no {table} rows");
            var paths = await LocalPartsOrRepairAsync(store, committer, keys, Path.Combine(scratch, table), ct).ConfigureAwait(false);
            Exec(db, $"CREATE VIEW {table}_{side} AS SELECT * FROM read_parquet([{string.Join(", ", paths.Select(p => "'" + p.Replace("'", "''") + "'"))}])");
        }
        // The interventions' tables, when the run has rows of them (run --causal, --knockout-window).
        foreach (var table in new[] { TableNames.CausalEffects, TableNames.KnockoutEffects })
        {
            var keys = manifests.SelectMany(m => m.Parts.Where(p => p.Table == table && p.Rows > 0)).Select(p => p.Path).ToList();
            if (keys.Count == 0) continue;
            var paths = await LocalPartsOrRepairAsync(store, committer, keys, Path.Combine(scratch, table), ct).ConfigureAwait(false);
            Exec(db, $"CREATE VIEW {table}_{side} AS SELECT * FROM read_parquet([{string.Join(", ", paths.Select(p => "'" + p.Replace("'", "''") + "'"))}])");
        }
        long examples = Convert.ToInt64(Rows(db, $"SELECT count(*) FROM examples_{side}")[0][0]);
        return new DiffSide(store.Location, manifests[0].RunId, manifests[0].ModelFingerprint, examples);
    }

    /// <summary>The parts' local files; a part still staged (its commit was interrupted) is published first.</summary>
    private static async Task<List<string>> LocalPartsOrRepairAsync(IObjectStore store, ShardCommitter committer, List<string> keys, string scratch, CancellationToken ct)
    {
        Directory.CreateDirectory(scratch);
        try
        {
            return await Finalizer.LocalPartsAsync(store, keys, scratch, ct).ConfigureAwait(false);
        }
        catch (CommitIntegrityException)
        {
            await committer.RepairAsync(null, ct).ConfigureAwait(false);
            return await Finalizer.LocalPartsAsync(store, keys, scratch, ct).ConfigureAwait(false);
        }
    }

    private static string Safe(string s) => new(s.Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_').ToArray());

}
