namespace LlavaMech.Cli.Commands;

/// <summary>
/// <c>compare-methods</c> and <c>score-methods</c>: every image-patch attribution method on the
/// VQA examples of a manifest, judged by faithfulness (deletion/insertion AUC), wall time and,
/// where an object box is known, by ground truth (pointing game, heatmap mass in the object).
/// </summary>
public static class MethodsCommand
{
    public static CommandLine.OptionSpec[] Specs(bool scoring) =>
    [
        new("model", "DIR", "LLaVA checkpoint folder", Required: true),
        new("dataset", "MANIFEST", "manifest.jsonl (see datasets/README.md); tqa lines are skipped", Required: true),
        new("out", "DIR", "output folder", Required: true),
        new("limit", "N", "use at most N examples (0 = all)", "0") { Range = CommandLine.NumericRange.Int(0) },
        new("methods", "LIST", $"comma-separated subset of: {string.Join(",", MethodComparison.AllMethods)}"),
        new("heads", "K", "top heads of the multi-head log-increase map", "3") { Range = CommandLine.NumericRange.Int(1, 4096) },
        new("ig-steps", "N", "integrated-gradients steps", "20") { Range = CommandLine.NumericRange.Int(1, 10_000) },
        new("occlusion-window", "W", "occlude W x W patches around each patch", "1") { Range = CommandLine.NumericRange.Int(1, 64) },
        new("curve-steps", "N", "points of the deletion/insertion curves", "16") { Range = CommandLine.NumericRange.Int(1, 10_000) },
        new("batch", "B", "batch size of the intervention passes", "32") { Range = CommandLine.NumericRange.Int(1, 4096) },
        new("target", "MODE", scoring ? "argmax, or expected (the manifest's answer token)" : "argmax, or expected (the manifest's answer token)", scoring ? "expected" : "argmax"),
        .. DeviceOptions.Specs,
    ];

    public static string Description(bool scoring) => (scoring
        ? """
          Scores each attribution method against the known location of the asked object: for every
          VQA example with an object_box, the box is mapped onto the model's image tokens (after
          resize and crop) and each method is scored by the pointing game (its top patch lies in the
          object), the share of its positive heatmap mass inside the object, deletion AUC and time.
          The chance rate is reported beside them: the object's share of the patches, which is how
          often a randomly drawn top patch hits the object and the mass a uniform map puts on it.
          Pointing game with its 95% Wilson interval, mass with its 95% t interval; where the
          manifest gives answers and the model misses some, the table again over the correctly
          answered examples (methods.parquet has a `correct` column).
          """
        : """
          Compares the log-probability-increase heatmap of the paper (top head and top-k heads)
          with raw attention, gradient x input, integrated gradients and per-patch occlusion on the
          same model and inputs: faithfulness by the deletion curve (remove patches in the method's
          order, replacing their embeddings with the mean image embedding; lower AUC is better) and
          the insertion curve (higher is better), and wall time per example.
          """) + """

        Writes: methods.parquet (example x method: time, AUCs, box metrics, object_area_share), curves.parquet,
        scores.parquet (every patch score), summary.md, deletion_curves.png, insertion_curves.png,
        example.png (the first example under every method).
        """;

    public static string Examples(bool scoring) => scoring
        ? "  ./llavamech score-methods --model datasets/shapes-colors-mini/toy-llava --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/score"
        : "  ./llavamech compare-methods --model tests/fixtures/tiny-llava-mha --dataset datasets/shapes-colors-mini/manifest.jsonl --limit 8 --out out/compare";

    public static int RunCompare(CommandLine cl) => Run(cl, scoring: false);
    public static int RunScore(CommandLine cl) => Run(cl, scoring: true);

    private static int Run(CommandLine cl, bool scoring)
    {
        var options = DeviceOptions.Apply(cl);
        var outDir = cl.Require("out");
        var manifest = ManifestReader.Read(cl.Require("dataset"));
        foreach (var r in manifest.Rejects) Console.Error.WriteLine($"skipping {r.Message}");
        var examples = manifest.Examples.Where(e => e.IsVqa && (!scoring || e.ObjectBox is not null)).ToList();
        int limit = cl.GetInt("limit");
        if (limit > 0) examples = examples.Take(limit).ToList();
        if (examples.Count == 0) throw new UsageException(scoring ? "the manifest has no VQA example with an object_box" : "the manifest has no VQA example");
        var methods = cl.Get("methods")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet();
        if (methods?.FirstOrDefault(m => !MethodComparison.AllMethods.Contains(m)) is { } bad) throw new UsageException($"unknown method '{bad}'");
        var targetMode = cl.Require("target");
        if (targetMode is not ("argmax" or "expected")) throw new UsageException("--target is argmax or expected");
        var compareOptions = new ComparisonOptions
        {
            TopKHeads = cl.GetInt("heads"), IntegratedGradientSteps = cl.GetInt("ig-steps"), OcclusionWindow = cl.GetInt("occlusion-window"),
            CurveSteps = cl.GetInt("curve-steps"), BatchSize = cl.GetInt("batch"), Methods = methods,
        };

        using var model = LoadedModel.Load(cl.Require("model"), options);
        if (!model.HasVision) throw new UsageException("method comparison needs a LLaVA model");
        Directory.CreateDirectory(outDir);
        var progress = new ProgressBar(scoring ? "score-methods" : "compare-methods", examples.Count);
        var (results, firstInput) = MethodComparisonStudy.Run(model, examples, compareOptions, targetMode == "expected", Console.Error.WriteLine, progress);
        progress.Done();
        var summary = MethodComparisonStudy.Write(results, firstInput, model,
            new MethodRunInfo(scoring, cl.Require("dataset"), targetMode, cl.Require("ig-steps"), cl.Require("occlusion-window"), cl.Require("curve-steps")), outDir);
        Console.WriteLine(summary);
        Console.WriteLine($"wrote {outDir}/methods.parquet, curves.parquet, scores.parquet, summary.md, deletion_curves.png, insertion_curves.png, example.png");
        return 0;
    }
}
