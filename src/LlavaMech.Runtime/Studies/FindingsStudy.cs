using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Model;
using LlavaMech.Reports;

namespace LlavaMech.Runtime.Studies;

/// <summary><c>findings</c>: the paper's mechanism findings measured on a dataset whose object locations are known.</summary>
public static class FindingsStudy
{
    /// <summary>
    /// The findings of each example (the manifest's answer is the target when <paramref name="useExpected"/>, else the argmax;
    /// it is the reference for accuracy either way).
    /// </summary>
    /// <param name="bindingFigures">a folder for the figure of each binding error (<see cref="ExampleFindings.NamedObject"/>), at
    /// most <see cref="MaxBindingFigures"/>; null: none.</param>
    public static List<ExampleFindings> Run(LoadedModel model, IEnumerable<ManifestExample> examples, bool useExpected, IProgress<int>? progress = null,
        string? bindingFigures = null)
    {
        using var analyzer = new ExampleAnalyzer(model);
        var results = new List<ExampleFindings>();
        int figures = 0;
        foreach (var ex in examples)
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            int? expectedId = ex.Expected is null ? null : TargetResolver.Resolve(ex.Expected, model.Tokenizer, model.Config.Text.VocabSize);
            var input = model.Prepare(ex.Prompt, ex.ImagePath);
            var scene = SceneObjects.Of(ex).Select(o => (o.Shape, o.Color, o.Box)).ToArray();
            ExampleAnalysis? analysis = null;
            var found = MechanismFindings.Analyze(analyzer, ex.Id, input, ex.ObjectBox!, ex.Expected, useExpected ? expectedId : null, expectedId,
                scene, a => analysis = a);
            results.Add(found);
            if (bindingFigures is not null && found.NamedObject is { } named && figures++ < MaxBindingFigures)
            {
                Directory.CreateDirectory(bindingFigures);
                var asked = found.Objects![0];
                ExplainReport.WriteExplainFigure(model, analysis!, Path.Combine(bindingFigures, $"{ex.Id}.png"), 1,
                    $"asked the {asked.Shape} ({asked.Color}), answered '{found.Answer}': the {named.Shape}'s colour");
            }
            progress?.Report(results.Count);
        }
        return results;
    }

    /// <summary>Figures of binding errors written by <see cref="Run"/>.</summary>
    public const int MaxBindingFigures = 24;

    /// <summary>Writes layers.png, heads.png and findings.md (the means over the examples) into <paramref name="outDir"/>; returns findings.md.</summary>
    public static string Write(List<ExampleFindings> results, string modelDir, string dataset, string targetMode, string outDir)
    {
        Directory.CreateDirectory(outDir);
        int layers = results[0].LayerAttn.Length;
        var meanAttn = TaskComparison.MeanPerLayer(results.Select(r => r.LayerAttn).ToList());
        var meanFfn = TaskComparison.MeanPerLayer(results.Select(r => r.LayerFfn).ToList());
        var meanHeads = TaskComparison.MeanHeads(results.Select(r => r.HeadIncrease).ToList());
        var topCounts = results.GroupBy(r => (r.TopHead.Layer, r.TopHead.Head)).OrderByDescending(g => g.Count()).Take(5).ToList();
        var withAnswer = results.Where(r => r.Correct is not null).ToList();
        double accuracy = withAnswer.Count == 0 ? double.NaN : withAnswer.Count(r => r.Correct!.Value) / (double)withAnswer.Count;
        LayerBars.Write(Path.Combine(outDir, "layers.png"), meanAttn, meanFfn, "mean layer-level increase of log p(answer)");
        HeadHeatmap.Write(Path.Combine(outDir, "heads.png"), meanHeads, "mean head-level increase of log p(answer)");

        var layerRows = Enumerable.Range(0, layers).Select(l => (IReadOnlyList<string>)[l.ToString(), $"{meanAttn[l]:0.0000}", $"{meanFfn[l]:0.0000}"]).ToList();
        var headRows = topCounts.Select(g => (IReadOnlyList<string>)[$"L{g.Key.Layer}H{g.Key.Head}", $"{g.Count()}", $"{100.0 * g.Count() / results.Count:0.0}%", $"{meanHeads[g.Key.Layer, g.Key.Head]:0.0000}"]).ToList();
        double lensObj = results.Average(r => r.LensRankObject), lensBg = results.Where(r => !double.IsNaN(r.LensRankBackground)).Average(r => r.LensRankBackground);
        double top5Obj = results.Average(r => r.LensTop5Object), top5Bg = results.Where(r => !double.IsNaN(r.LensTop5Background)).Average(r => r.LensTop5Background);
        double headObj = results.Average(r => r.TopHeadObjectShare), area = results.Average(r => r.ObjectAreaShare);
        var md = $"""
            # Mechanism findings

            model `{modelDir}`, dataset `{dataset}`, {results.Count} VQA examples with object boxes, target = {targetMode}.

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
            {ImageParts(results)}
            {BindingErrors(results)}
            """;
        File.WriteAllText(Path.Combine(outDir, "findings.md"), md);
        return md;
    }

    /// <summary>
    /// LLaVA-NeXT: the top head's attention per image part (base tile, high-resolution grid, newlines), and within the base
    /// and grid parts the share on the object next to the object's share of that part's tokens; empty for a single grid.
    /// </summary>
    private static string ImageParts(List<ExampleFindings> results)
    {
        var withParts = results.Where(r => r.Parts is not null).ToList();
        if (withParts.Count == 0) return "";
        var rows = withParts.SelectMany(r => r.Parts!).GroupBy(p => p.Part).Select(g =>
        {
            var area = g.Where(p => p.ObjectShare is not null).ToList();
            return (IReadOnlyList<string>)
            [
                g.Key, $"{g.Average(p => p.Tokens):0.#}", $"{g.Average(p => p.AttentionShare):0.000}",
                area.Count == 0 ? "n/a (no area)" : $"{area.Average(p => p.ObjectShare!.Value):0.000}",
                area.Count == 0 ? "n/a (no area)" : $"{area.Average(p => p.ObjectAreaShare!.Value):0.000}",
            ];
        }).ToList();
        return $"""

            ## Image parts: base tile, high-resolution grid, newlines

            The object's tokens above are those of both the base tile (the whole image in one tile) and the high-resolution grid
            (padding removed) whose cells overlap its box; newlines have no area. The top head's attention per part ({withParts.Count} examples):

            {MarkdownTable.Render(["part", "tokens", "share of the head's image attention", "on the object, within the part", "object's share of the part's tokens"], rows)}
            """;
    }

    /// <summary>
    /// The binding errors: wrong answers that are another object's colour, with where the top head looked, on the asked
    /// object and on the object it named (shares of its image attention and of its log-increase map).
    /// </summary>
    private static string BindingErrors(List<ExampleFindings> results)
    {
        var withScene = results.Where(r => r.Objects is not null && r.Correct is not null).ToList();
        if (withScene.Count == 0) return "## Binding errors\n\nthe manifest lists no scene objects: not measured";
        var errors = withScene.Where(r => r.NamedObject is not null).ToList();
        int wrong = withScene.Count(r => r.Correct == false);
        string head = $"## Binding errors\n\n{errors.Count} of {wrong} wrong answers name the colour of another object in the scene " +
                      $"({(double)errors.Count / withScene.Count:0.0%} of {withScene.Count} examples).";
        if (errors.Count == 0) return head;
        int lookedAtNamed = errors.Count(r => r.NamedObject!.LogIncreaseShare > r.Objects![0].LogIncreaseShare);
        var rows = errors.Select(r => (IReadOnlyList<string>)
        [
            r.Id, $"{r.Objects![0].Shape} ({r.Expected})", r.Answer, r.NamedObject!.Shape, $"L{r.TopHead.Layer}H{r.TopHead.Head}",
            $"{r.Objects[0].AttentionShare:0.00} / {r.NamedObject.AttentionShare:0.00}", $"{r.Objects[0].LogIncreaseShare:0.00} / {r.NamedObject.LogIncreaseShare:0.00}",
        ]).ToList();
        return $"""
            {head} In {lookedAtNamed} of them the top head's log-increase map put more mass on the named object than on
            the asked one. Figures of the first {MaxBindingFigures}: binding/<example>.png.

            {MarkdownTable.Render(["example", "asked", "answered", "colour of", "top head", "attention asked / named", "log-increase mass asked / named"], rows)}
            """;
    }
}
