using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Model;
using LlavaMech.Reports;
using LlavaMech.Storage;
using SkiaSharp;

namespace LlavaMech.Runtime.Studies;

/// <summary>How a method comparison was asked for, as the summary states it (option values as given).</summary>
public sealed record MethodRunInfo(bool Scoring, string Dataset, string Target, string IgSteps, string OcclusionWindow, string CurveSteps);

/// <summary>
/// <c>compare-methods</c> and <c>score-methods</c>: every image-patch attribution method on the VQA examples of a
/// manifest, judged by faithfulness (deletion/insertion AUC), wall time and, where an object box is known, by ground
/// truth (pointing game, heatmap mass in the object); and the tables, summary and figures of the result.
/// </summary>
public static class MethodComparisonStudy
{
    /// <summary>
    /// Runs every method on each example (an example whose image cannot be prepared is reported to
    /// <paramref name="skipped"/> and left out); with <paramref name="expectedTarget"/> the manifest's answer is the target.
    /// Returns the results and the first example's input (for the example figure).
    /// </summary>
    public static (List<ExampleComparison> Results, ModelInput? FirstInput) Run(LoadedModel model, IEnumerable<ManifestExample> examples, ComparisonOptions options,
        bool expectedTarget, Action<string> skipped, IProgress<int>? progress = null)
    {
        using var analyzer = new ExampleAnalyzer(model);
        var results = new List<ExampleComparison>();
        ModelInput? firstInput = null;
        foreach (var ex in examples)
        {
            ModelInput input;
            try { input = model.Prepare(ex.Prompt, ex.ImagePath); }
            catch (Exception e) when (e is Processing.ProcessingException or IOException)
            {
                skipped($"skipping {ex.Id} (line {ex.Line}): {e.Message}");
                continue;
            }
            int? expected = ex.Expected is null ? null : TargetResolver.Resolve(ex.Expected, model.Tokenizer, model.Config.Text.VocabSize);
            var r = MethodComparison.Run(analyzer, ex.Id, input, ex.ObjectBox, options, expectedTarget ? expected : null);
            results.Add(r with { Correct = expected is { } id ? r.Argmax == id : null });
            firstInput ??= input;
            progress?.Report(results.Count);
        }
        return (results, firstInput);
    }

    /// <summary>
    /// Writes methods.parquet, curves.parquet, scores.parquet, summary.md, deletion_curves.png, insertion_curves.png and
    /// example.png into <paramref name="outDir"/>; returns the summary.
    /// </summary>
    public static string Write(List<ExampleComparison> results, ModelInput? firstInput, LoadedModel model, MethodRunInfo info, string outDir)
    {
        WriteTables(results, outDir);
        var summary = Summary(results, model, info);
        File.WriteAllText(Path.Combine(outDir, "summary.md"), summary);
        WriteCurves(results, outDir);
        if (firstInput is not null) WriteExampleFigure(results[0], firstInput, Path.Combine(outDir, "example.png"));
        return summary;
    }

    private static void WriteTables(List<ExampleComparison> results, string outDir)
    {
        var rows = results.SelectMany(r => r.Methods.Select(m => (r, m))).ToList();
        RowFile.Write(rows.Select(x => new MethodRow(x.r.ExampleId, x.m.Method, x.r.TargetId, x.r.TargetProb, x.m.TimeMs, x.m.Deletion.Auc,
            x.m.Insertion.Auc, x.m.PointingHit, x.m.MassInBox, x.r.ObjectAreaShare, x.r.Correct, x.m.NewlineMass)), outDir);
        RowFile.Write(rows.SelectMany(x => new[] { ("deletion", x.m.Deletion), ("insertion", x.m.Insertion) }
            .SelectMany(c => c.Item2.Fractions.Select((f, i) => new CurveRow(x.r.ExampleId, x.m.Method, c.Item1, i, f, c.Item2.Probabilities[i])))), outDir);
        RowFile.Write(rows.SelectMany(x => x.m.Scores.Select((v, p) =>
        {
            var place = x.r.Layout.PlaceOf(p);
            return new ScoreRow(x.r.ExampleId, x.m.Method, p, place.Row, place.Col, v, place.PartName);
        })), outDir);
    }

    /// <summary>One row of methods.parquet: one attribution method on one example (<c>correct</c>: the answer is the expected one;
    /// <c>newline_mass</c>: LLaVA-NeXT's share of the positive map mass on the row newlines, null for a single grid).</summary>
    [Table("methods")]
    public sealed record MethodRow(string ExampleId, string Method, int TargetId, double TargetProb, double TimeMs, double DeletionAuc,
        double InsertionAuc, bool? PointingHit, double? MassInBox, double? ObjectAreaShare, bool? Correct, double? NewlineMass);

    /// <summary>One row of curves.parquet: one point of a method's deletion or insertion curve.</summary>
    [Table("curves")]
    public sealed record CurveRow(string ExampleId, string Method, string Curve, int Step, double Fraction, double Prob);

    /// <summary>One row of scores.parquet: one method's score of one image token <c>patch</c> (0..P-1), with its place: the image
    /// part (<c>base</c>; LLaVA-NeXT also <c>grid</c> and <c>newline</c>) and the row and column in that part's grid.</summary>
    [Table("scores")]
    public sealed record ScoreRow(string ExampleId, string Method, int Patch, int PatchRow, int PatchCol, double Score, string ImagePart);

    private static string Summary(List<ExampleComparison> results, LoadedModel model, MethodRunInfo info)
    {
        bool boxes = results.Any(r => r.ObjectTokens is not null);
        var judged = results.Where(r => r.Correct is not null).ToList();
        var correct = judged.Where(r => r.Correct == true).ToList();
        string restricted = boxes && judged.Count > 0 && correct.Count < results.Count && correct.Count > 0
            ? $"\n\nThe {correct.Count} correctly answered examples only ({100.0 * correct.Count / judged.Count:0.0}% of the {judged.Count} with an expected answer):\n\n{Table(correct, boxes)}"
            : "";
        string accuracy = judged.Count == 0 ? "" : $" accuracy {100.0 * correct.Count / judged.Count:0.0}% ({correct.Count}/{judged.Count});";
        double meanProb = results.Average(r => r.TargetProb);
        return $"""
            # {(info.Scoring ? "Ground-truth scoring" : "Comparison")} of image-patch attribution methods

            model `{model.Directory}`, dataset `{info.Dataset}`, {results.Count} VQA examples, {results[0].Patches} image tokens,
            target = {info.Target} (mean target probability {meanProb:0.000});{accuracy} {model.Device}, {model.DType}; IG {info.IgSteps} steps,
            occlusion window {info.OcclusionWindow}, {info.CurveSteps} curve steps, removed patch = mean image-token embedding.
            AUCs: mean ± sd; pointing game: share with its 95% Wilson interval; mass in object: mean with its 95% t interval.

            {Table(results, boxes)}{restricted}
            """;
    }

    /// <summary>The methods' table over <paramref name="results"/>, with the chance row and its note where boxes are known.</summary>
    private static string Table(List<ExampleComparison> results, bool boxes)
    {
        static string MeanSd(IEnumerable<double> xs)
        {
            var v = xs.ToArray();
            double mean = v.Average(), sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
            return $"{mean:0.0000} ± {sd:0.0000}";
        }
        static string MeanCi(IReadOnlyList<double> v)
        {
            double mean = v.Average(), sd = v.Count > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Count - 1)) : double.NaN;
            var (lo, hi) = Intervals.Mean(mean, sd, v.Count);
            return lo is null ? $"{mean:0.000}" : $"{mean:0.000} [{lo:0.000}, {hi:0.000}]";
        }
        static string Share(int k, int n)
        {
            var (lo, hi) = Intervals.Wilson(k, n);
            return $"{100.0 * k / n:0.0}% [{100 * lo:0.0}, {100 * hi:0.0}]";
        }
        var methods = results.SelectMany(r => r.Methods.Select(m => m.Method)).Distinct().ToList();
        var headers = new List<string> { "method", "examples", "ms / example", "deletion AUC (lower better)", "insertion AUC (higher better)" };
        if (boxes) headers.AddRange(["pointing game", "mass in object"]);
        bool newlines = results.Any(r => r.Methods.Any(m => m.NewlineMass is not null));
        if (newlines) headers.Add("mass on newlines");
        var rows = new List<IReadOnlyList<string>>();
        foreach (var m in methods)
        {
            var rs = results.Select(r => r.Methods.First(x => x.Method == m)).ToList();
            var row = new List<string> { m, rs.Count.ToString(), $"{rs.Average(x => x.TimeMs):0.0}", MeanSd(rs.Select(x => x.Deletion.Auc)), MeanSd(rs.Select(x => x.Insertion.Auc)) };
            if (boxes)
            {
                var withBox = rs.Where(x => x.PointingHit is not null).ToList();
                row.Add(withBox.Count == 0 ? "" : Share(withBox.Count(x => x.PointingHit!.Value), withBox.Count));
                row.Add(withBox.Count == 0 ? "" : MeanCi(withBox.Select(x => x.MassInBox!.Value).ToList()));
            }
            if (newlines) row.Add($"{rs.Where(x => x.NewlineMass is not null).Average(x => x.NewlineMass!.Value):0.000}");
            rows.Add(row);
        }
        string chance = "";
        if (boxes)
        {
            // A top patch drawn uniformly at random hits the object with probability (object patches / all
            // patches); a uniform map puts that same share of its mass in the object.
            var withBox = results.Where(r => r.ObjectAreaShare is not null).ToList();
            double area = withBox.Average(r => r.ObjectAreaShare!.Value);
            rows.Add(["chance (uniform random patch / uniform map)", withBox.Count.ToString(), "", "", "", $"{100.0 * area:0.0}%", $"{area:0.000}", .. (newlines ? new[] { "" } : Array.Empty<string>())]);
            chance = $"\nchance rate: the object covers {100.0 * area:0.0}% of the patches on average (min {100.0 * withBox.Min(r => r.ObjectAreaShare!.Value):0.0}%, max {100.0 * withBox.Max(r => r.ObjectAreaShare!.Value):0.0}%), "
                + "so a random top patch hits it that often and a uniform map has that mass in it.\n";
        }
        if (newlines)
            chance += "\nLLaVA-NeXT: the object's tokens are those of the base tile (the whole image) and of the high-resolution grid (padding removed) "
                + "whose cells overlap its box; the row newlines have no area, so the pointing game, the mass in the object and the chance rate leave them out "
                + "(mass on newlines: their share of the positive map mass).\n";
        return MarkdownTable.Render(headers, rows) + chance;
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

    /// <summary>The first example under every method: the image, then one overlay per method, side by side, on the base grid
    /// (LLaVA-NeXT: the base tile, the whole image in one tile).</summary>
    private static void WriteExampleFigure(ExampleComparison r, ModelInput input, string path)
    {
        var g = input.Image!.Geometry;
        var baseGrid = r.Layout.Grids[0];
        if (baseGrid.Rows != baseGrid.Cols) return;
        int side = baseGrid.Rows;
        int scale = Math.Max(1, 224 / g.CropWidth + (224 % g.CropWidth == 0 ? 0 : 1));
        var panels = new List<(string Title, SKBitmap Bitmap)>();
        var plain = new float[baseGrid.Cells];
        panels.Add(("input", HeatmapOverlay.Render(input.Image.CroppedRgb, g.CropHeight, g.CropWidth, plain, side, scale, alpha: 0f)));
        foreach (var m in r.Methods) panels.Add((m.Method, HeatmapOverlay.Render(input.Image.CroppedRgb, g.CropHeight, g.CropWidth, r.Layout.GridValues(m.Scores, 0), side, scale)));
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
                var box = r.ObjectTokens?.Select(t => r.Layout.CellOf(t)).Where(c => c is { Grid: 0 }).Select(c => (c!.Value.Row, c.Value.Col)).ToList();
                if (box is { Count: > 0 } && i > 0)
                {
                    // Outline the object's patches so a reader can judge each map against the truth.
                    int cell = w / side;
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
