using System.Text.Json;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Model;
using LlavaMech.Reports;

namespace LlavaMech.Cli.Commands;

/// <summary><c>findings</c>: the paper's mechanism findings measured on a dataset whose object locations are known.</summary>
public static class FindingsCommand
{
    public static readonly CommandLine.OptionSpec[] Specs =
    [
        new("model", "DIR", "LLaVA checkpoint folder", Required: true),
        new("dataset", "MANIFEST", "manifest with VQA examples that have object_box (and ideally expected)", Required: true),
        new("out", "DIR", "output folder (findings.md, findings.json, heads.png, layers.png)", Required: true),
        new("limit", "N", "at most N examples (0 = all)", "0") { Range = CommandLine.NumericRange.Int(0) },
        new("target", "MODE", "expected (the manifest's answer token) or argmax", "expected"),
        .. DeviceOptions.Specs,
    ];

    public const string Description = """
        For every VQA example with an object box: accuracy, which layers (attention vs FFN) and which
        heads raise the answer's log-probability, whether the logit lens of the visual tokens at the
        object's patches already ranks the answer (colour) word highly compared with the other
        patches, and whether the answer-carrying (top) head attends to the object more than its area
        alone would give. Reports means over the dataset.
        """;

    public const string Examples = "  ./llavamech findings --model datasets/shapes-colors-mini/toy-llava --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/findings";

    public static int Run(CommandLine cl)
    {
        var options = DeviceOptions.Apply(cl);
        var manifest = ManifestReader.Read(cl.Require("dataset"));
        var examples = manifest.Examples.Where(e => e.IsVqa && e.ObjectBox is not null).ToList();
        int limit = cl.GetInt("limit");
        if (limit > 0) examples = examples.Take(limit).ToList();
        if (examples.Count == 0) throw new UsageException("the manifest has no VQA example with an object_box");
        bool useExpected = cl.Require("target") switch { "expected" => true, "argmax" => false, var m => throw new UsageException($"--target {m}: use expected or argmax") };
        using var model = LoadedModel.Load(cl.Require("model"), options);
        using var analyzer = new ExampleAnalyzer(model);
        var results = new List<ExampleFindings>();
        var progress = new ProgressBar("findings", examples.Count);
        foreach (var ex in examples)
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            int? expectedId = ex.Expected is null ? null : TargetOption.Resolve(ex.Expected, model.Tokenizer, model.Config.Text.VocabSize);
            var input = model.Prepare(ex.Prompt, ex.ImagePath);
            results.Add(MechanismFindings.Analyze(analyzer, ex.Id, input, ex.ObjectBox!, ex.Expected, useExpected ? expectedId : null, expectedId));
            progress.Report(results.Count);
        }
        progress.Done();

        var outDir = cl.Require("out");
        Directory.CreateDirectory(outDir);
        int layers = results[0].LayerAttn.Length, heads = results[0].HeadIncrease[0].Length;
        var meanAttn = Enumerable.Range(0, layers).Select(l => results.Average(r => r.LayerAttn[l])).ToArray();
        var meanFfn = Enumerable.Range(0, layers).Select(l => results.Average(r => r.LayerFfn[l])).ToArray();
        var meanHeads = new double[layers, heads];
        foreach (var r in results) for (int l = 0; l < layers; l++) for (int h = 0; h < heads; h++) meanHeads[l, h] += r.HeadIncrease[l][h] / results.Count;
        var topCounts = results.GroupBy(r => (r.TopHead.Layer, r.TopHead.Head)).OrderByDescending(g => g.Count()).Take(5).ToList();
        var withAnswer = results.Where(r => r.Correct is not null).ToList();
        double accuracy = withAnswer.Count == 0 ? double.NaN : withAnswer.Count(r => r.Correct!.Value) / (double)withAnswer.Count;
        LayerBars.Write(Path.Combine(outDir, "layers.png"), meanAttn, meanFfn, "mean layer-level increase of log p(answer)");
        HeadHeatmap.Write(Path.Combine(outDir, "heads.png"), meanHeads, "mean head-level increase of log p(answer)");
        File.WriteAllText(Path.Combine(outDir, "findings.json"), JsonSerializer.Serialize(results, Json.Indented));

        var layerRows = Enumerable.Range(0, layers).Select(l => (IReadOnlyList<string>)[l.ToString(), $"{meanAttn[l]:0.0000}", $"{meanFfn[l]:0.0000}"]).ToList();
        var headRows = topCounts.Select(g => (IReadOnlyList<string>)[$"L{g.Key.Layer}H{g.Key.Head}", $"{g.Count()}", $"{100.0 * g.Count() / results.Count:0.0}%", $"{meanHeads[g.Key.Layer, g.Key.Head]:0.0000}"]).ToList();
        double lensObj = results.Average(r => r.LensRankObject), lensBg = results.Where(r => !double.IsNaN(r.LensRankBackground)).Average(r => r.LensRankBackground);
        double top5Obj = results.Average(r => r.LensTop5Object), top5Bg = results.Where(r => !double.IsNaN(r.LensTop5Background)).Average(r => r.LensTop5Background);
        double headObj = results.Average(r => r.TopHeadObjectShare), area = results.Average(r => r.ObjectAreaShare);
        var md = $"""
            # Mechanism findings

            model `{model.Directory}`, dataset `{cl.Require("dataset")}`, {results.Count} VQA examples with object boxes, target = {cl.Require("target")}.

            accuracy (argmax = expected answer): {(double.IsNaN(accuracy) ? "n/a" : $"{accuracy:0.0%}")}; mean p(target) {results.Average(r => r.TargetProb):0.000}

            ## Which layers carry the answer (mean log-probability increase)

            {MarkdownTable.Render(["layer", "attention", "FFN"], layerRows)}

            ## Which heads (the top head of each example)

            {MarkdownTable.Render(["head", "examples where it is the top head", "share", "mean head increase"], headRows)}

            ## Logit lens of the visual tokens

            | patches | mean rank of the answer (0 = top) | answer in the lens top-5 |
            | --- | ---: | ---: |
            | the object's | {lensObj:0.0} | {top5Obj:0.0%} |
            | all others | {lensBg:0.0} | {top5Bg:0.0%} |

            ## Does the answer-carrying head attend to the object?

            the top head's attention on the object's patches, as a share of its attention on the image: {headObj:0.000}
            (the object covers {area:0.000} of the patches on average: a ratio of {headObj / area:0.0}x)
            """;
        File.WriteAllText(Path.Combine(outDir, "findings.md"), md);
        Console.WriteLine(md);
        Console.WriteLine($"wrote {outDir}/findings.md, findings.json, layers.png, heads.png");
        return 0;
    }
}
