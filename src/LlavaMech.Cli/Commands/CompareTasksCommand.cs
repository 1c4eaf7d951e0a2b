using LlavaMech.Analysis;
using LlavaMech.Storage;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Model;
using LlavaMech.Reports;

namespace LlavaMech.Cli.Commands;

/// <summary>
/// <c>compare-tasks</c>: the paper's findings (a) and (c): do the same heads and layers carry the
/// answer for visual and textual questions, and for Llava's language model and the base Vicuna?
/// </summary>
public static class CompareTasksCommand
{
    public static readonly CommandLine.OptionSpec[] Specs =
    [
        new("model", "DIR", "model of set A (a LLaVA checkpoint for VQA)", Required: true),
        new("dataset", "MANIFEST", "manifest with the examples of both sets", Required: true),
        new("task-a", "TASK", "task of set A: vqa or tqa", "vqa"),
        new("model-b", "DIR", "model of set B (default: --model; e.g. the base Vicuna to compare models on TQA)"),
        new("task-b", "TASK", "task of set B: vqa or tqa", "tqa"),
        new("top-k", "K", "top heads whose overlap (Jaccard) is reported", "10") { Range = CommandLine.NumericRange.Int(1, 1_000_000) },
        new("limit", "N", "at most N examples per set (0 = all)", "0") { Range = CommandLine.NumericRange.Int(0) },
        new("target", "MODE", "argmax, or expected (the manifest's answer token)", "argmax"),
        new("out", "DIR", "output folder", Required: true),
        .. DeviceOptions.Specs,
    ];

    public const string Description = """
        Computes the head-level and layer-level log-probability increase for every example of two
        sets, A and B, and compares them: Pearson and Spearman correlation of the mean head maps,
        the mean per-example correlation, Jaccard overlap of the top-k heads, and the layer profiles.
        Default: VQA vs TQA through the same LLaVA model (finding a). With --model-b and
        --task-a tqa --task-b tqa: Llava's language model vs the base Vicuna on the same textual
        questions (finding c). Writes summary.md, head_stats.parquet, layer_stats.parquet,
        heads_a.png, heads_b.png, heads_diff.png, layers_a.png, layers_b.png.
        """;

    public const string Examples = """
          ./llavamech compare-tasks --model datasets/shapes-colors-mini/toy-llava --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/tasks
          ./llavamech compare-tasks --model tests/fixtures/tiny-llava-mha --model-b tests/fixtures/tiny-vicuna --task-a tqa --task-b tqa \
              --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/llava-vs-vicuna
        """;

    private sealed record SetResult(string Name, string Model, string Task, List<(string Id, ExampleStatistics Stats)> Examples);

    public static int Run(CommandLine cl)
    {
        var options = DeviceOptions.Apply(cl);
        string taskA = cl.Require("task-a"), taskB = cl.Require("task-b");
        foreach (var t in new[] { taskA, taskB }) if (t is not ("vqa" or "tqa")) throw new UsageException($"task '{t}': use vqa or tqa");
        var manifest = ManifestReader.Read(cl.Require("dataset"));
        foreach (var r in manifest.Rejects) Console.Error.WriteLine($"skipping {r.Message}");
        string modelA = cl.Require("model"), modelB = cl.Get("model-b") ?? modelA;
        if (modelA == modelB && taskA == taskB) throw new UsageException("sets A and B are identical: change --task-b or give --model-b");
        int limit = cl.GetInt("limit"), k = cl.GetInt("top-k");
        bool expected = cl.Require("target") switch { "argmax" => false, "expected" => true, var m => throw new UsageException($"--target {m}: use argmax or expected") };

        var a = Analyze("A", modelA, taskA, manifest, limit, expected, options);
        var b = Analyze("B", modelB, taskB, manifest, limit, expected, options);
        var meanA = MeanHeads(a); var meanB = MeanHeads(b);
        if (meanA.GetLength(0) != meanB.GetLength(0) || meanA.GetLength(1) != meanB.GetLength(1))
            throw new UsageException($"the two models differ in shape ({meanA.GetLength(0)}x{meanA.GetLength(1)} vs {meanB.GetLength(0)}x{meanB.GetLength(1)} layers x heads)");

        var outDir = cl.Require("out");
        Directory.CreateDirectory(outDir);
        var fa = Flatten(meanA); var fb = Flatten(meanB);
        double pearson = Correlation.Pearson(fa, fb), spearman = Correlation.Spearman(fa, fb);
        var topA = TopHeads(meanA, k); var topB = TopHeads(meanB, k);
        double jaccard = (double)topA.Intersect(topB).Count() / topA.Union(topB).Count();
        // Per-example agreement: each example of A against B's mean map (examples are not paired across sets).
        double perExample = a.Examples.Average(e => Correlation.Pearson(e.Stats.HeadIncrease.SelectMany(r => r).ToArray(), fb));

        HeadHeatmap.Write(Path.Combine(outDir, "heads_a.png"), meanA, $"A: {a.Task} on {Path.GetFileName(a.Model.TrimEnd('/'))} (mean of {a.Examples.Count})");
        HeadHeatmap.Write(Path.Combine(outDir, "heads_b.png"), meanB, $"B: {b.Task} on {Path.GetFileName(b.Model.TrimEnd('/'))} (mean of {b.Examples.Count})");
        DiffHeatmap.Write(Path.Combine(outDir, "heads_diff.png"), meanA, meanB, "A", "B");
        var (attnA, ffnA) = MeanLayers(a); var (attnB, ffnB) = MeanLayers(b);
        LayerBars.Write(Path.Combine(outDir, "layers_a.png"), attnA, ffnA, $"A: {a.Task}, mean layer increase");
        LayerBars.Write(Path.Combine(outDir, "layers_b.png"), attnB, ffnB, $"B: {b.Task}, mean layer increase");
        WriteTables(outDir, a, b);

        string H(HashSet<(int, int)> s) => string.Join(", ", s.OrderBy(x => x).Select(x => $"L{x.Item1}H{x.Item2}"));
        var layerRows = Enumerable.Range(0, attnA.Length).Select(l => (IReadOnlyList<string>)[l.ToString(), $"{attnA[l]:0.0000}", $"{ffnA[l]:0.0000}", $"{attnB[l]:0.0000}", $"{ffnB[l]:0.0000}"]).ToList();
        var summary = $"""
            # Head and layer importance: A vs B

            - A: {a.Task} through `{a.Model}`, {a.Examples.Count} examples
            - B: {b.Task} through `{b.Model}`, {b.Examples.Count} examples
            - target: {cl.Require("target")}

            | measure | value |
            | --- | ---: |
            | Pearson correlation of the mean head maps | {pearson:0.000} |
            | Spearman correlation of the mean head maps | {spearman:0.000} |
            | mean correlation of A's examples with B's mean map | {perExample:0.000} |
            | Jaccard overlap of the top-{k} heads | {jaccard:0.000} |

            top-{k} heads of A: {H(topA)}

            top-{k} heads of B: {H(topB)}

            ## Layer profiles (mean log-probability increase)

            {MarkdownTable.Render(["layer", "A attention", "A FFN", "B attention", "B FFN"], layerRows)}
            """;
        File.WriteAllText(Path.Combine(outDir, "summary.md"), summary);
        Console.WriteLine(summary);
        Console.WriteLine($"wrote {outDir}/summary.md, head_stats.parquet, layer_stats.parquet, heads_a.png, heads_b.png, heads_diff.png, layers_a.png, layers_b.png");
        return 0;
    }

    private static SetResult Analyze(string name, string modelDir, string task, ManifestReadResult manifest, int limit, bool expected, ModelLoadOptions options)
    {
        var examples = manifest.Examples.Where(e => e.Task == task).ToList();
        if (limit > 0) examples = examples.Take(limit).ToList();
        if (examples.Count == 0) throw new UsageException($"the manifest has no {task} example for set {name}");
        using var model = LoadedModel.Load(modelDir, options);
        if (task == "vqa" && !model.HasVision) throw new UsageException($"set {name}: {modelDir} is text-only and cannot answer VQA");
        using var analyzer = new ExampleAnalyzer(model);
        var results = new List<(string, ExampleStatistics)>();
        var progress = new ProgressBar($"set {name} ({task})", examples.Count);
        foreach (var ex in examples)
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            int? target = expected && ex.Expected is not null ? TargetOption.Resolve(ex.Expected, model.Tokenizer, model.Config.Text.VocabSize) : null;
            var input = model.Prepare(ex.Prompt, task == "vqa" ? ex.ImagePath : null);
            var a = analyzer.Analyze(input, new StatisticsOptions { TargetId = target, TopKHeads = 1, Neurons = new NeuronOptions(NeuronRoute.None) });
            results.Add((ex.Id, a.Statistics));
            progress.Report(results.Count);
        }
        progress.Done();
        return new SetResult(name, modelDir, task, results);
    }

    private static double[,] MeanHeads(SetResult s)
    {
        var first = s.Examples[0].Stats.HeadIncrease;
        var m = new double[first.Length, first[0].Length];
        foreach (var (_, st) in s.Examples)
            for (int l = 0; l < first.Length; l++)
                for (int h = 0; h < first[0].Length; h++) m[l, h] += st.HeadIncrease[l][h] / s.Examples.Count;
        return m;
    }

    private static (double[] Attn, double[] Ffn) MeanLayers(SetResult s)
    {
        int layers = s.Examples[0].Stats.LayerAttnIncrease.Length;
        return (Enumerable.Range(0, layers).Select(l => s.Examples.Average(e => e.Stats.LayerAttnIncrease[l])).ToArray(),
                Enumerable.Range(0, layers).Select(l => s.Examples.Average(e => e.Stats.LayerFfnIncrease[l])).ToArray());
    }

    private static double[] Flatten(double[,] m) => m.Cast<double>().ToArray();

    private static HashSet<(int, int)> TopHeads(double[,] m, int k) =>
        Enumerable.Range(0, m.GetLength(0)).SelectMany(l => Enumerable.Range(0, m.GetLength(1)).Select(h => (l, h)))
            .OrderByDescending(x => m[x.l, x.h]).ThenBy(x => x.l).ThenBy(x => x.h).Take(k).ToHashSet();

    private static void WriteTables(string outDir, SetResult a, SetResult b)
    {
        var heads = new[] { a, b }.SelectMany(s => s.Examples.SelectMany(e => e.Stats.HeadIncrease.SelectMany((row, l) => row.Select((v, h) => (Set: s.Name, s.Task, e.Id, Layer: l, Head: h, Value: v))))).ToList();
        new ColumnTable()
            .Add("set", heads.Select(x => x.Set).ToList()).Add("task", heads.Select(x => x.Task).ToList()).Add("example_id", heads.Select(x => x.Id).ToList())
            .Add("layer", heads.Select(x => x.Layer).ToList()).Add("head", heads.Select(x => x.Head).ToList()).Add("log_prob_increase", heads.Select(x => x.Value).ToList())
            .Write(Path.Combine(outDir, "head_stats.parquet"));
        var layers = new[] { a, b }.SelectMany(s => s.Examples.SelectMany(e => e.Stats.LayerAttnIncrease.Select((v, l) => (Set: s.Name, s.Task, e.Id, Layer: l, Component: "attn", Value: v))
            .Concat(e.Stats.LayerFfnIncrease.Select((v, l) => (Set: s.Name, s.Task, e.Id, Layer: l, Component: "ffn", Value: v))))).ToList();
        new ColumnTable()
            .Add("set", layers.Select(x => x.Set).ToList()).Add("task", layers.Select(x => x.Task).ToList()).Add("example_id", layers.Select(x => x.Id).ToList())
            .Add("layer", layers.Select(x => x.Layer).ToList()).Add("component", layers.Select(x => x.Component).ToList()).Add("log_prob_increase", layers.Select(x => x.Value).ToList())
            .Write(Path.Combine(outDir, "layer_stats.parquet"));
    }
}

/// <summary>Correlations over flattened maps.</summary>
public static class Correlation
{
    public static double Pearson(double[] x, double[] y)
    {
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Length; i++) { sxy += (x[i] - mx) * (y[i] - my); sxx += (x[i] - mx) * (x[i] - mx); syy += (y[i] - my) * (y[i] - my); }
        return sxx > 0 && syy > 0 ? sxy / Math.Sqrt(sxx * syy) : double.NaN;
    }

    /// <summary>Pearson correlation of the ranks (ties get their mean rank).</summary>
    public static double Spearman(double[] x, double[] y) => Pearson(Ranks(x), Ranks(y));

    public static double[] Ranks(double[] v)
    {
        var order = Enumerable.Range(0, v.Length).OrderBy(i => v[i]).ToArray();
        var r = new double[v.Length];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && v[order[j + 1]] == v[order[i]]) j++;
            for (int k = i; k <= j; k++) r[order[k]] = (i + j) / 2.0 + 1;
            i = j + 1;
        }
        return r;
    }
}
