using LlavaMech.Storage;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Model;
using LlavaMech.Reports;
using SkiaSharp;

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
          VQA example with an object_box, the box is mapped onto the model's patch grid (after
          resize and crop) and each method is scored by the pointing game (its top patch lies in the
          object), the share of its positive heatmap mass inside the object, deletion AUC and time.
          The chance rate is reported beside them: the object's share of the patches, which is how
          often a randomly drawn top patch hits the object and the mass a uniform map puts on it.
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
        using var analyzer = new ExampleAnalyzer(model);
        Directory.CreateDirectory(outDir);
        var results = new List<ExampleComparison>();
        ModelInput? firstInput = null;
        var progress = new ProgressBar(scoring ? "score-methods" : "compare-methods", examples.Count);
        foreach (var ex in examples)
        {
            ModelInput input;
            try { input = model.Prepare(ex.Prompt, ex.ImagePath); }
            catch (Exception e) when (e is Processing.ProcessingException or IOException)
            {
                Console.Error.WriteLine($"skipping {ex.Id} (line {ex.Line}): {e.Message}");
                continue;
            }
            int? target = targetMode == "expected" && ex.Expected is not null ? TargetOption.Resolve(ex.Expected, model.Tokenizer, model.Config.Text.VocabSize) : null;
            results.Add(MethodComparison.Run(analyzer, ex.Id, input, scoring ? ex.ObjectBox : ex.ObjectBox, compareOptions, target));
            firstInput ??= input;
            progress.Report(results.Count);
        }
        progress.Done();

        WriteTables(results, outDir);
        var summary = Summary(results, model, cl, scoring);
        File.WriteAllText(Path.Combine(outDir, "summary.md"), summary);
        WriteCurves(results, outDir);
        if (firstInput is not null) WriteExampleFigure(results[0], firstInput, Path.Combine(outDir, "example.png"));
        Console.WriteLine(summary);
        Console.WriteLine($"wrote {outDir}/methods.parquet, curves.parquet, scores.parquet, summary.md, deletion_curves.png, insertion_curves.png, example.png");
        return 0;
    }

    private static void WriteTables(List<ExampleComparison> results, string outDir)
    {
        var rows = results.SelectMany(r => r.Methods.Select(m => (r, m))).ToList();
        new ColumnTable()
            .Add("example_id", rows.Select(x => x.r.ExampleId).ToList())
            .Add("method", rows.Select(x => x.m.Method).ToList())
            .Add("target_id", rows.Select(x => x.r.TargetId).ToList())
            .Add("target_prob", rows.Select(x => x.r.TargetProb).ToList())
            .Add("time_ms", rows.Select(x => x.m.TimeMs).ToList())
            .Add("deletion_auc", rows.Select(x => x.m.Deletion.Auc).ToList())
            .Add("insertion_auc", rows.Select(x => x.m.Insertion.Auc).ToList())
            .Add("pointing_hit", rows.Select(x => x.m.PointingHit).ToList())
            .Add("mass_in_box", rows.Select(x => x.m.MassInBox).ToList())
            .Add("object_area_share", rows.Select(x => x.r.ObjectAreaShare).ToList())
            .Write(Path.Combine(outDir, "methods.parquet"));

        var curve = rows.SelectMany(x => new[] { ("deletion", x.m.Deletion), ("insertion", x.m.Insertion) }
            .SelectMany(c => c.Item2.Fractions.Select((f, i) => (x.r.ExampleId, x.m.Method, Kind: c.Item1, Step: i, Fraction: f, Prob: c.Item2.Probabilities[i])))).ToList();
        new ColumnTable()
            .Add("example_id", curve.Select(c => c.ExampleId).ToList())
            .Add("method", curve.Select(c => c.Method).ToList())
            .Add("curve", curve.Select(c => c.Kind).ToList())
            .Add("step", curve.Select(c => c.Step).ToList())
            .Add("fraction", curve.Select(c => c.Fraction).ToList())
            .Add("prob", curve.Select(c => c.Prob).ToList())
            .Write(Path.Combine(outDir, "curves.parquet"));

        var scores = rows.SelectMany(x => x.m.Scores.Select((v, p) => (x.r.ExampleId, x.m.Method, Patch: p, Row: p / x.r.GridSide, Col: p % x.r.GridSide, Score: (double)v))).ToList();
        new ColumnTable()
            .Add("example_id", scores.Select(c => c.ExampleId).ToList())
            .Add("method", scores.Select(c => c.Method).ToList())
            .Add("patch", scores.Select(c => c.Patch).ToList())
            .Add("patch_row", scores.Select(c => c.Row).ToList())
            .Add("patch_col", scores.Select(c => c.Col).ToList())
            .Add("score", scores.Select(c => c.Score).ToList())
            .Write(Path.Combine(outDir, "scores.parquet"));
    }

    private static string Summary(List<ExampleComparison> results, LoadedModel model, CommandLine cl, bool scoring)
    {
        static string MeanSd(IEnumerable<double> xs)
        {
            var v = xs.ToArray();
            double mean = v.Average(), sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
            return $"{mean:0.0000} ± {sd:0.0000}";
        }
        var methods = results.SelectMany(r => r.Methods.Select(m => m.Method)).Distinct().ToList();
        bool boxes = results.Any(r => r.ObjectPatches is not null);
        var headers = new List<string> { "method", "examples", "ms / example", "deletion AUC (lower better)", "insertion AUC (higher better)" };
        if (boxes) headers.AddRange(["pointing game", "mass in object"]);
        var rows = new List<IReadOnlyList<string>>();
        foreach (var m in methods)
        {
            var rs = results.Select(r => r.Methods.First(x => x.Method == m)).ToList();
            var row = new List<string> { m, rs.Count.ToString(), $"{rs.Average(x => x.TimeMs):0.0}", MeanSd(rs.Select(x => x.Deletion.Auc)), MeanSd(rs.Select(x => x.Insertion.Auc)) };
            if (boxes)
            {
                var withBox = rs.Where(x => x.PointingHit is not null).ToList();
                row.Add(withBox.Count == 0 ? "" : $"{100.0 * withBox.Count(x => x.PointingHit!.Value) / withBox.Count:0.0}%");
                row.Add(withBox.Count == 0 ? "" : $"{withBox.Average(x => x.MassInBox!.Value):0.000}");
            }
            rows.Add(row);
        }
        string chance = "";
        if (boxes)
        {
            // A top patch drawn uniformly at random hits the object with probability (object patches / all
            // patches); a uniform map puts that same share of its mass in the object.
            var withBox = results.Where(r => r.ObjectAreaShare is not null).ToList();
            double area = withBox.Average(r => r.ObjectAreaShare!.Value);
            rows.Add(["chance (uniform random patch / uniform map)", withBox.Count.ToString(), "", "", "", $"{100.0 * area:0.0}%", $"{area:0.000}"]);
            chance = $"\nchance rate: the object covers {100.0 * area:0.0}% of the patches on average (min {100.0 * withBox.Min(r => r.ObjectAreaShare!.Value):0.0}%, max {100.0 * withBox.Max(r => r.ObjectAreaShare!.Value):0.0}%), "
                + "so a random top patch hits it that often and a uniform map has that mass in it.\n";
        }
        double meanProb = results.Average(r => r.TargetProb);
        return $"""
            # {(scoring ? "Ground-truth scoring" : "Comparison")} of image-patch attribution methods

            model `{model.Directory}`, dataset `{cl.Require("dataset")}`, {results.Count} VQA examples, {results[0].Patches} image tokens,
            target = {cl.Require("target")} (mean target probability {meanProb:0.000}), {model.Device}, {model.DType}; IG {cl.Require("ig-steps")} steps,
            occlusion window {cl.Require("occlusion-window")}, {cl.Require("curve-steps")} curve steps, removed patch = mean image-token embedding.

            {MarkdownTable.Render(headers, rows)}{chance}
            """;
    }

    private static void WriteCurves(List<ExampleComparison> results, string outDir)
    {
        foreach (var kind in new[] { "deletion", "insertion" })
        {
            var curves = new Dictionary<string, double[]>();
            foreach (var m in results[0].Methods.Select(x => x.Method))
            {
                var all = results.Select(r => r.Methods.First(x => x.Method == m)).Select(x => kind == "deletion" ? x.Deletion : x.Insertion).ToList();
                curves[m] = Enumerable.Range(0, all[0].Probabilities.Length).Select(i => all.Average(c => c.Probabilities[i])).ToArray();
            }
            CurvePlot.Write(Path.Combine(outDir, $"{kind}_curves.png"), curves, $"fraction of image patches {(kind == "deletion" ? "removed" : "restored")}", "p(target)",
                $"mean {kind} curve over {results.Count} examples");
        }
    }

    /// <summary>The first example under every method: the image, then one overlay per method, side by side.</summary>
    private static void WriteExampleFigure(ExampleComparison r, ModelInput input, string path)
    {
        var g = input.Image!.Geometry;
        int scale = Math.Max(1, 224 / g.CropWidth + (224 % g.CropWidth == 0 ? 0 : 1));
        var panels = new List<(string Title, SKBitmap Bitmap)>();
        var plain = new float[r.Patches];
        panels.Add(("input", HeatmapOverlay.Render(input.Image.CroppedRgb, g.CropHeight, g.CropWidth, plain, r.GridSide, scale, alpha: 0f)));
        foreach (var m in r.Methods) panels.Add((m.Method, HeatmapOverlay.Render(input.Image.CroppedRgb, g.CropHeight, g.CropWidth, m.Scores, r.GridSide, scale)));
        int w = panels[0].Bitmap.Width, h = panels[0].Bitmap.Height, pad = 8, titleH = 22;
        using var canvasBitmap = new SKBitmap(panels.Count * (w + pad) + pad, h + titleH + 2 * pad);
        using (var canvas = new SKCanvas(canvasBitmap))
        {
            canvas.Clear(SKColors.White);
            using var font = new SKFont(SKTypeface.Default, 13);
            using var paint = new SKPaint { Color = SKColors.Black, IsAntialias = true };
            for (int i = 0; i < panels.Count; i++)
            {
                int x = pad + i * (w + pad);
                canvas.DrawText(panels[i].Title, x, pad + 14, font, paint);
                canvas.DrawBitmap(panels[i].Bitmap, x, pad + titleH);
                if (r.ObjectPatches is { Count: > 0 } box && i > 0)
                {
                    // Outline the object's patches so a reader can judge each map against the truth.
                    int cell = w / r.GridSide;
                    int r0 = box.Min(p => p.Row), r1 = box.Max(p => p.Row), c0 = box.Min(p => p.Col), c1 = box.Max(p => p.Col);
                    using var outline = new SKPaint { Color = SKColors.White, Style = SKPaintStyle.Stroke, StrokeWidth = 2 };
                    canvas.DrawRect(x + c0 * cell, pad + titleH + r0 * cell, (c1 - c0 + 1) * cell, (r1 - r0 + 1) * cell, outline);
                }
            }
        }
        foreach (var p in panels) p.Bitmap.Dispose();
        using var data = canvasBitmap.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
    }
}
