using LlavaMech.Analysis;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Model;
using LlavaMech.Reports;
using LlavaMech.Storage;

namespace LlavaMech.Runtime.Studies;

/// <summary>The head and layer statistics of one set of examples (one task through one model).</summary>
public sealed record TaskSet(string Name, string Model, string Task, IReadOnlyList<(string Id, ExampleStatistics Stats)> Examples)
{
    /// <summary>[layers, heads] mean log-probability increase over the examples.</summary>
    public double[,] MeanHeads() => TaskComparison.MeanHeads(Examples.Select(e => e.Stats.HeadIncrease).ToList());

    /// <summary>Mean attention and FFN increase per layer.</summary>
    public (double[] Attn, double[] Ffn) MeanLayers() =>
        (TaskComparison.MeanPerLayer(Examples.Select(e => e.Stats.LayerAttnIncrease).ToList()), TaskComparison.MeanPerLayer(Examples.Select(e => e.Stats.LayerFfnIncrease).ToList()));
}

/// <summary>A and B compared: correlations of the mean head maps, overlap of the top-k heads, layer profiles.</summary>
public sealed record TaskComparisonResult(TaskSet A, TaskSet B, double[,] MeanA, double[,] MeanB, double Pearson, double Spearman, double PerExample,
    int TopK, HashSet<(int Layer, int Head)> TopA, HashSet<(int Layer, int Head)> TopB, double Jaccard,
    double[] AttnA, double[] FfnA, double[] AttnB, double[] FfnB);

/// <summary>
/// <c>compare-tasks</c>: do the same heads and layers carry the answer for two sets of examples (visual vs textual
/// questions, or Llava's language model vs the base Vicuna)?
/// </summary>
public static class TaskComparison
{
    /// <summary>Statistics of every example of <paramref name="task"/> in the manifest (at most <paramref name="limit"/>; 0 = all).</summary>
    public static TaskSet Analyze(string name, string modelDir, string task, ManifestReadResult manifest, int limit, bool expected, ModelLoadOptions options, IProgress<int>? progress = null)
    {
        var examples = manifest.Examples.Where(e => e.Task == task).ToList();
        if (limit > 0) examples = examples.Take(limit).ToList();
        if (examples.Count == 0) throw new InvalidOptionException($"the manifest has no {task} example for set {name}");
        using var model = LoadedModel.Load(modelDir, options);
        if (task == "vqa" && !model.HasVision) throw new InvalidOptionException($"set {name}: {modelDir} is text-only and cannot answer VQA");
        using var analyzer = new ExampleAnalyzer(model);
        var results = new List<(string, ExampleStatistics)>();
        foreach (var ex in examples)
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            int? target = expected && ex.Expected is not null ? TargetResolver.Resolve(ex.Expected, model.Tokenizer, model.Config.Text.VocabSize) : null;
            var input = model.Prepare(ex.Prompt, task == "vqa" ? ex.ImagePath : null);
            var a = analyzer.Analyze(input, new StatisticsOptions { TargetId = target, TopKHeads = 1, Neurons = new NeuronOptions(NeuronRoute.None) });
            results.Add((ex.Id, a.Statistics));
            progress?.Report(results.Count);
        }
        return new TaskSet(name, modelDir, task, results);
    }

    public static TaskComparisonResult Compare(TaskSet a, TaskSet b, int k)
    {
        var meanA = a.MeanHeads(); var meanB = b.MeanHeads();
        if (meanA.GetLength(0) != meanB.GetLength(0) || meanA.GetLength(1) != meanB.GetLength(1))
            throw new InvalidOptionException($"the two models differ in shape ({meanA.GetLength(0)}x{meanA.GetLength(1)} vs {meanB.GetLength(0)}x{meanB.GetLength(1)} layers x heads)");
        var fa = Flatten(meanA); var fb = Flatten(meanB);
        var topA = TopHeads(meanA, k); var topB = TopHeads(meanB, k);
        // Per-example agreement: each example of A against B's mean map (examples are not paired across sets).
        double perExample = a.Examples.Average(e => Correlation.Pearson(e.Stats.HeadIncrease.SelectMany(r => r).ToArray(), fb));
        var (attnA, ffnA) = a.MeanLayers(); var (attnB, ffnB) = b.MeanLayers();
        return new TaskComparisonResult(a, b, meanA, meanB, Correlation.Pearson(fa, fb), Correlation.Spearman(fa, fb), perExample,
            k, topA, topB, Correlation.Jaccard(topA, topB), attnA, ffnA, attnB, ffnB);
    }

    /// <summary>Element-wise mean of per-example [layer][head] maps.</summary>
    public static double[,] MeanHeads(IReadOnlyList<double[][]> maps)
    {
        var first = maps[0];
        var m = new double[first.Length, first[0].Length];
        foreach (var map in maps)
            for (int l = 0; l < first.Length; l++)
                for (int h = 0; h < first[0].Length; h++) m[l, h] += map[l][h] / maps.Count;
        return m;
    }

    /// <summary>Mean over the examples of each layer's value.</summary>
    public static double[] MeanPerLayer(IReadOnlyList<double[]> perExample) =>
        Enumerable.Range(0, perExample[0].Length).Select(l => perExample.Average(e => e[l])).ToArray();

    public static double[] Flatten(double[,] m) => m.Cast<double>().ToArray();

    /// <summary>The k largest cells of a [layer, head] map; ties by layer, then head.</summary>
    public static HashSet<(int Layer, int Head)> TopHeads(double[,] m, int k) =>
        Enumerable.Range(0, m.GetLength(0)).SelectMany(l => Enumerable.Range(0, m.GetLength(1)).Select(h => (l, h)))
            .OrderByDescending(x => m[x.l, x.h]).ThenBy(x => x.l).ThenBy(x => x.h).Take(k).ToHashSet();

    /// <summary>
    /// Writes summary.md, head_stats.parquet, layer_stats.parquet, heads_a.png, heads_b.png, heads_diff.png, layers_a.png,
    /// layers_b.png into <paramref name="outDir"/>; returns the summary.
    /// </summary>
    public static string Write(TaskComparisonResult r, string outDir, string targetMode)
    {
        TaskSet a = r.A, b = r.B;
        Directory.CreateDirectory(outDir);
        HeadHeatmap.Write(Path.Combine(outDir, "heads_a.png"), r.MeanA, $"A: {a.Task} on {Path.GetFileName(a.Model.TrimEnd('/'))} (mean of {a.Examples.Count})");
        HeadHeatmap.Write(Path.Combine(outDir, "heads_b.png"), r.MeanB, $"B: {b.Task} on {Path.GetFileName(b.Model.TrimEnd('/'))} (mean of {b.Examples.Count})");
        DiffHeatmap.Write(Path.Combine(outDir, "heads_diff.png"), r.MeanA, r.MeanB, "A", "B");
        LayerBars.Write(Path.Combine(outDir, "layers_a.png"), r.AttnA, r.FfnA, $"A: {a.Task}, mean layer increase");
        LayerBars.Write(Path.Combine(outDir, "layers_b.png"), r.AttnB, r.FfnB, $"B: {b.Task}, mean layer increase");
        WriteTables(outDir, a, b);

        string H(HashSet<(int, int)> s) => string.Join(", ", s.OrderBy(x => x).Select(x => $"L{x.Item1}H{x.Item2}"));
        var layerRows = Enumerable.Range(0, r.AttnA.Length).Select(l => (IReadOnlyList<string>)[l.ToString(), $"{r.AttnA[l]:0.0000}", $"{r.FfnA[l]:0.0000}", $"{r.AttnB[l]:0.0000}", $"{r.FfnB[l]:0.0000}"]).ToList();
        int k = r.TopK;
        var summary = $"""
            # Head and layer importance: A vs B

            - A: {a.Task} through `{a.Model}`, {a.Examples.Count} examples
            - B: {b.Task} through `{b.Model}`, {b.Examples.Count} examples
            - target: {targetMode}

            | measure | value |
            | --- | ---: |
            | Pearson correlation of the mean head maps | {r.Pearson:0.000} |
            | Spearman correlation of the mean head maps | {r.Spearman:0.000} |
            | mean correlation of A's examples with B's mean map | {r.PerExample:0.000} |
            | Jaccard overlap of the top-{k} heads | {r.Jaccard:0.000} |

            top-{k} heads of A: {H(r.TopA)}

            top-{k} heads of B: {H(r.TopB)}

            ## Layer profiles (mean log-probability increase)

            {MarkdownTable.Render(["layer", "A attention", "A FFN", "B attention", "B FFN"], layerRows)}
            """;
        File.WriteAllText(Path.Combine(outDir, "summary.md"), summary);
        return summary;
    }

    private static void WriteTables(string outDir, TaskSet a, TaskSet b)
    {
        RowFile.Write(new[] { a, b }.SelectMany(s => s.Examples.SelectMany(e => e.Stats.HeadIncrease.SelectMany((row, l) =>
            row.Select((v, h) => new TaskHeadRow(s.Name, s.Task, e.Id, l, h, v))))), outDir);
        RowFile.Write(new[] { a, b }.SelectMany(s => s.Examples.SelectMany(e => e.Stats.LayerAttnIncrease.Select((v, l) => new TaskLayerRow(s.Name, s.Task, e.Id, l, Components.Attention, v))
            .Concat(e.Stats.LayerFfnIncrease.Select((v, l) => new TaskLayerRow(s.Name, s.Task, e.Id, l, Components.Ffn, v))))), outDir);
    }

    /// <summary>One row of compare-tasks' head_stats.parquet.</summary>
    [Table("head_stats")]
    public sealed record TaskHeadRow(string Set, string Task, string ExampleId, int Layer, int Head, double LogProbIncrease);

    /// <summary>One row of compare-tasks' layer_stats.parquet.</summary>
    [Table("layer_stats")]
    public sealed record TaskLayerRow(string Set, string Task, string ExampleId, int Layer, string Component, double LogProbIncrease);
}
