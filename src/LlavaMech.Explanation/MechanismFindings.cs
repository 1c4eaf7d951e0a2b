using LlavaMech.Analysis;
using LlavaMech.Model;
using LlavaMech.Processing;

namespace LlavaMech.Explanation;

/// <summary>
/// What one example says about the paper's findings, where the object's location is known:
/// where the answer is built (layers, heads), whether the visual tokens at the object already
/// read as the answer under the logit lens, and whether the answer-carrying head looks at the object.
/// </summary>
/// <param name="LensRankObject">mean rank (0 = top) of the target under the logit lens of the projector outputs at the object's patches.</param>
/// <param name="LensTop5Object">share of the object's patches whose lens top-5 contains the target.</param>
/// <param name="TopHeadObjectShare">the top head's attention on the object's patches as a share of its attention on the image.</param>
/// <param name="ObjectAreaShare">the object's patches as a share of all patches (what a head looking nowhere in particular would give).</param>
/// <param name="Answer">the model's answer: the argmax token's text, trimmed.</param>
/// <param name="Objects">where the top head looked, per object of the scene (the asked one first), when the manifest lists them.</param>
/// <remarks>The object's tokens are every image token whose cell overlaps its box (<see cref="ImageRegions"/>): for LLaVA-NeXT
/// those of the base tile and of the high-resolution grid; newlines have no area and count neither as object nor as background.</remarks>
public sealed record ExampleFindings(string Id, int TargetId, string? Expected, bool? Correct, double TargetProb,
    double[] LayerAttn, double[] LayerFfn, double[][] HeadIncrease, HeadScore TopHead,
    double LensRankObject, double LensRankBackground, double LensTop5Object, double LensTop5Background,
    double TopHeadObjectShare, double ObjectAreaShare, string Answer = "", IReadOnlyList<ObjectLook>? Objects = null)
{
    /// <summary>LLaVA-NeXT: where the top head looked per image part (base, grid, newline); null for a single grid.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<PartLook>? Parts { get; init; }

    /// <summary>
    /// The object whose colour a wrong answer named (another object of the scene), or null: the answer is right, names no
    /// object's colour, or the scene's objects are unknown. A binding error: the model read the wrong object.
    /// </summary>
    public ObjectLook? NamedObject => Correct == false && Objects is { Count: > 1 } objects && Answer != Expected
        ? objects.Skip(1).FirstOrDefault(o => o.Color == Answer) : null;
}

/// <summary>
/// How much of the top head's reading of the image fell on one object: its share of the head's image attention and of
/// the head's log-increase heatmap (the paper's map, which sums to 1), next to the object's share of the patches.
/// </summary>
public sealed record ObjectLook(string Shape, string Color, double AttentionShare, double LogIncreaseShare, double AreaShare);

/// <summary>
/// The top head's reading of one image part (LLaVA-NeXT's base tile, high-resolution grid or newlines).
/// </summary>
/// <param name="AttentionShare">the head's attention on the part as a share of its attention on the image.</param>
/// <param name="ObjectShare">of the head's attention on the part, the share on the object's tokens there (null for newlines: no area).</param>
/// <param name="ObjectAreaShare">the object's tokens as a share of the part's tokens (null for newlines).</param>
public sealed record PartLook(string Part, int Tokens, double AttentionShare, double? ObjectShare, double? ObjectAreaShare);

public static class MechanismFindings
{
    /// <param name="targetId">the token to explain (the expected answer); null: the argmax.</param>
    /// <param name="scene">the scene's objects (the asked one first) when known: where the top head looked is measured for each.</param>
    /// <param name="analysis">receives the example's analysis (e.g. for a figure).</param>
    public static ExampleFindings Analyze(ExampleAnalyzer analyzer, string id, ModelInput input, double[] objectBox, string? expected, int? targetId, int? expectedId,
        IReadOnlyList<(string Shape, string Color, double[] Box)>? scene = null, Action<ExampleAnalysis>? analysis = null)
    {
        var model = analyzer.Model;
        var a = analyzer.Analyze(input, new StatisticsOptions { TargetId = targetId, TopKHeads = 1, Neurons = new NeuronOptions(NeuronRoute.None) });
        var s = a.Statistics;
        var image = s.Image ?? throw new ArgumentException($"example '{id}' has no image");
        var layout = input.ImageLayout!;
        HashSet<int> Patches(double[] b) => ImageRegions.TokensInBox(layout, input.Image!.Geometry, model.Config.Vision!.PatchSize, b).ToHashSet();
        var box = Patches(objectBox);
        var lens = image.VisualTokenLens!;
        double Mean(IEnumerable<double> xs) { var v = xs.ToList(); return v.Count == 0 ? double.NaN : v.Average(); }
        var patches = ImageRegions.AreaTokens(layout);   // image tokens with an area (not the class token or a newline)
        var inside = patches.Where(box.Contains).ToList();
        var outside = patches.Where(i => !box.Contains(i)).ToList();
        var attention = a.TopHeadAttention[0].Attention;
        double onImage = image.ImagePositions.Sum(pos => attention[pos]);
        double onObject = inside.Sum(i => attention[image.ImagePositions[i]]);
        int argmax = s.Top5Ids[0];
        ObjectLook[]? looks = null;
        if (scene is { Count: > 0 })
        {
            var heat = Heatmaps.LogIncrease(s, 1);
            looks = scene.Select(o =>
            {
                var at = Patches(o.Box).Where(i => i < heat.Length).ToList();
                return new ObjectLook(o.Shape, o.Color, onImage > 0 ? at.Sum(i => attention[image.ImagePositions[i]]) / onImage : 0,
                    at.Sum(i => (double)heat[i]), (double)at.Count / patches.Length);
            }).ToArray();
        }
        PartLook[]? parts = layout.Tiling is null ? null : ImageRegions.Parts(layout).Select(p =>
        {
            double on = p.Tokens.Sum(i => attention[image.ImagePositions[i]]);
            bool area = p.Part != "newline" && p.Part != "cls";
            var obj = p.Tokens.Where(box.Contains).ToList();
            return new PartLook(p.Part, p.Tokens.Length, onImage > 0 ? on / onImage : 0,
                area ? (on > 0 ? obj.Sum(i => attention[image.ImagePositions[i]]) / on : 0) : null, area ? (double)obj.Count / p.Tokens.Length : null);
        }).ToArray();
        analysis?.Invoke(a);
        return new ExampleFindings(id, s.TargetId, expected, expectedId is null ? null : argmax == expectedId, Math.Exp(s.TargetLogProb),
            s.LayerAttnIncrease, s.LayerFfnIncrease, s.HeadIncrease, s.TopHeads[0],
            Mean(inside.Select(i => (double)lens.TargetRank[i])), Mean(outside.Select(i => (double)lens.TargetRank[i])),
            Mean(inside.Select(i => lens.TopIds[i].Contains(s.TargetId) ? 1.0 : 0.0)), Mean(outside.Select(i => lens.TopIds[i].Contains(s.TargetId) ? 1.0 : 0.0)),
            onImage > 0 ? onObject / onImage : 0, (double)inside.Count / patches.Length, model.TokenText(argmax).Trim(), looks) { Parts = parts };
    }
}
