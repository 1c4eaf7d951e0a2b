namespace LlavaMech.Cli.Commands;

/// <summary>
/// <c>compare-tasks</c>: the paper's findings (a) and (c): do the same heads and layers carry the
/// answer for visual and textual questions, and for Llava's language model and the base Vicuna?
/// </summary>
public sealed class CompareTasksCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
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

    public static string Description { get; } = """
        Computes the head-level and layer-level log-probability increase for every example of two
        sets, A and B, and compares them: Pearson and Spearman correlation of the mean head maps,
        the mean per-example correlation, Jaccard overlap of the top-k heads, and the layer profiles.
        Default: VQA vs TQA through the same LLaVA model (finding a). With --model-b and
        --task-a tqa --task-b tqa: Llava's language model vs the base Vicuna on the same textual
        questions (finding c). Writes summary.md, head_stats.parquet, layer_stats.parquet,
        heads_a.png, heads_b.png, heads_diff.png, layers_a.png, layers_b.png.
        """;

    public static string Examples { get; } = """
          ./llavamech compare-tasks --model datasets/shapes-colors-mini/toy-llava --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/tasks
          ./llavamech compare-tasks --model tests/fixtures/tiny-llava-mha --model-b tests/fixtures/tiny-vicuna --task-a tqa --task-b tqa \
              --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/llava-vs-vicuna
        """;

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

        TaskSet Analyze(string name, string model, string task)
        {
            int n = manifest.Examples.Count(e => e.Task == task);
            var progress = new ProgressBar($"set {name} ({task})", limit > 0 ? Math.Min(n, limit) : n);
            var set = TaskComparison.Analyze(name, model, task, manifest, limit, expected, options, progress);
            progress.Done();
            return set;
        }
        var comparison = TaskComparison.Compare(Analyze("A", modelA, taskA), Analyze("B", modelB, taskB), k);
        var outDir = cl.Require("out");
        var summary = TaskComparison.Write(comparison, outDir, cl.Require("target"));
        Console.WriteLine(summary);
        Console.WriteLine($"wrote {outDir}/summary.md, head_stats.parquet, layer_stats.parquet, heads_a.png, heads_b.png, heads_diff.png, layers_a.png, layers_b.png");
        return 0;
    }
}
