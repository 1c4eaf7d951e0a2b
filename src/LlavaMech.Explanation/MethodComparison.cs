using System.Diagnostics;
using LlavaMech.Analysis;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Processing;
using static TorchSharp.torch;

namespace LlavaMech.Explanation;

/// <summary>Which attribution methods to run and how.</summary>
public sealed record ComparisonOptions
{
    /// <summary>Top heads of the multi-head log-increase map (the single-head map is always included).</summary>
    public int TopKHeads { get; init; } = 3;
    public int IntegratedGradientSteps { get; init; } = 20;
    public int OcclusionWindow { get; init; } = 1;
    public int CurveSteps { get; init; } = 16;
    public int BatchSize { get; init; } = 32;
    /// <summary>Method names to run (null: all of <see cref="MethodComparison.AllMethods"/>).</summary>
    public IReadOnlySet<string>? Methods { get; init; }
}

/// <summary>One method on one example.</summary>
/// <param name="Scores">[P] patch importance, row-major over the patch grid.</param>
/// <param name="TimeMs">wall time the method needs on its own (see <see cref="MethodComparison"/>).</param>
/// <param name="PointingHit">the top patch lies in the object (null without an object box).</param>
/// <param name="MassInBox">share of the positive heatmap mass inside the object (null without a box).</param>
/// <remarks>Scores cover every image token; the ground-truth metrics cover the tokens with an area (<see cref="ImageRegions"/>:
/// for LLaVA-NeXT the base tile and the high-resolution grid, each mapped onto the picture), newlines left out.</remarks>
public sealed record MethodResult(string Method, float[] Scores, double TimeMs, FaithfulnessCurve Deletion, FaithfulnessCurve Insertion,
    bool? PointingHit, double? MassInBox)
{
    /// <summary>LLaVA-NeXT: the share of the positive mass on the row newlines (no area, so outside the pointing game and the
    /// mass in the object); null for an image without newlines.</summary>
    public double? NewlineMass { get; init; }
}

/// <summary>All methods on one example, plus what the example was.</summary>
/// <param name="Patches">image tokens P: the length of every method's scores.</param>
/// <param name="Layout">the input's image-token layout: which patch each of the P scores belongs to.</param>
/// <param name="ObjectTokens">the image tokens (0..P-1) whose cells overlap the object's box (<see cref="ImageRegions.TokensInBox"/>); null without a box.</param>
public sealed record ExampleComparison(string ExampleId, int TargetId, double TargetProb, int Patches, ImageTokenLayout Layout,
    IReadOnlyList<int>? ObjectTokens, IReadOnlyList<MethodResult> Methods)
{
    /// <summary>The model's answer: the argmax token at the last position.</summary>
    public int Argmax { get; init; } = -1;

    /// <summary>Whether the answer is the expected one (null when the manifest gives none).</summary>
    public bool? Correct { get; init; }

    /// <summary>
    /// The object's tokens as a share of the image tokens that can be hit (null without a box): the chance rate of the
    /// pointing game (a top patch drawn uniformly at random hits the object this often) and the mass
    /// in the object of a uniform map. LLaVA-NeXT's newlines have no area and are left out.
    /// </summary>
    public double? ObjectAreaShare => ObjectTokens is null ? null : (double)ObjectTokens.Count / (Patches - Newlines);

    /// <summary>Row-ending newline tokens among the P (LLaVA-NeXT), 0 for a single grid.</summary>
    public int Newlines => Enumerable.Range(0, Patches).Count(i => ImageRegions.IsNewline(Layout, i));
}

/// <summary>
/// The paper's claim, measured: the log-increase heatmap against raw attention, gradient x input,
/// integrated gradients and occlusion, on the same model and input, by faithfulness (deletion and
/// insertion AUC), by ground truth where an object box is known (pointing game, mass in box), and
/// by wall time. Times: the log-increase methods are charged the hooked forward pass plus the
/// statistics they need (layers, heads, top heads' positions; no neurons); raw attention is
/// charged the hooked forward pass (it needs the last row of every pattern); gradients and
/// occlusion their own passes.
/// </summary>
public static class MethodComparison
{
    public const string LogIncreaseTop1 = "log_increase_top1";
    public const string LogIncreaseTopK = "log_increase_topk";
    public const string RawAttention = "raw_attention";
    public const string GradientXInput = "gradient_x_input";
    public const string IntegratedGradients = "integrated_gradients";
    public const string Occlusion = "occlusion";

    public static readonly string[] AllMethods = [LogIncreaseTop1, LogIncreaseTopK, RawAttention, GradientXInput, IntegratedGradients, Occlusion];

    public static ExampleComparison Run(ExampleAnalyzer analyzer, string exampleId, ModelInput input, double[]? objectBox, ComparisonOptions? options = null, int? targetId = null)
    {
        options ??= new ComparisonOptions();
        var model = analyzer.Model;
        if (input.Image is null) throw new ArgumentException($"example '{exampleId}' has no image: method comparison needs one");
        bool Wants(string m) => options.Methods is null || options.Methods.Contains(m);
        using var scope = NewDisposeScope();

        var analysis = analyzer.Analyze(input, new StatisticsOptions
        {
            TargetId = targetId, TopKHeads = Math.Max(1, options.TopKHeads), Neurons = new NeuronOptions(NeuronRoute.None),
        });
        var s = analysis.Statistics;
        int patches = input.ImagePositions.Length;
        var layout = input.ImageLayout!;
        IReadOnlyList<int>? objectTokens = objectBox is null ? null : ImageRegions.TokensInBox(layout, input.Image.Geometry, model.Config.Vision!.PatchSize, objectBox);
        bool newlines = Enumerable.Range(0, patches).Any(i => ImageRegions.IsNewline(layout, i));

        var ctx = new ImageTokenAttribution(model, input, s.TargetId, options.BatchSize);
        var results = new List<MethodResult>();
        void Add(string method, float[] scores, double ms)
        {
            var (del, ins) = Faithfulness.Curves(ctx, scores, options.CurveSteps);
            results.Add(new MethodResult(method, scores, ms, del, ins,
                objectTokens is null ? null : PointingHit(scores, layout, objectTokens),
                objectTokens is null ? null : MassInBox(scores, layout, objectTokens)) { NewlineMass = newlines ? NewlineMass(scores, layout) : null });
        }

        double toolMs = analysis.ForwardMs + analysis.StatisticsMs;
        if (Wants(LogIncreaseTop1)) Add(LogIncreaseTop1, Heatmaps.LogIncrease(s, 1), toolMs);
        if (Wants(LogIncreaseTopK)) Add(LogIncreaseTopK, Heatmaps.LogIncrease(s, options.TopKHeads), toolMs);
        if (Wants(RawAttention)) Add(RawAttention, Heatmaps.RawAttention(s), analysis.ForwardMs);
        var sw = new Stopwatch();
        if (Wants(GradientXInput)) { sw.Restart(); var g = ctx.GradientTimesInput(); Add(GradientXInput, g, sw.Elapsed.TotalMilliseconds); }
        if (Wants(IntegratedGradients)) { sw.Restart(); var ig = ctx.IntegratedGradients(options.IntegratedGradientSteps); Add(IntegratedGradients, ig, sw.Elapsed.TotalMilliseconds); }
        if (Wants(Occlusion)) { sw.Restart(); var oc = ctx.Occlusion(options.OcclusionWindow); Add(Occlusion, oc, sw.Elapsed.TotalMilliseconds); }
        return new ExampleComparison(exampleId, s.TargetId, Math.Exp(s.TargetLogProb), patches, layout, objectTokens, results) { Argmax = s.Top5Ids[0] };
    }

    /// <summary>The highest-scoring image token (first on ties; newlines left out: no area) is one of the object's tokens.</summary>
    public static bool PointingHit(float[] scores, ImageTokenLayout layout, IReadOnlyCollection<int> objectTokens)
    {
        int best = -1;
        for (int i = 0; i < scores.Length; i++)
            if (!ImageRegions.IsNewline(layout, i) && (best < 0 || scores[i] > scores[best])) best = i;
        return best >= 0 && objectTokens.Contains(best);
    }

    /// <summary>Share of the positive mass of the map (newlines left out) on the object's tokens (0 when there is no positive mass).</summary>
    public static double MassInBox(float[] scores, ImageTokenLayout layout, IReadOnlyCollection<int> objectTokens)
    {
        double inside = 0, total = 0;
        var set = objectTokens.ToHashSet();
        for (int i = 0; i < scores.Length; i++)
        {
            if (ImageRegions.IsNewline(layout, i)) continue;
            double v = Math.Max(0, scores[i]);
            total += v;
            if (set.Contains(i)) inside += v;
        }
        return total > 0 ? inside / total : 0;
    }

    /// <summary>Share of the positive mass of the map on the newline tokens (0 when there is no positive mass).</summary>
    public static double NewlineMass(float[] scores, ImageTokenLayout layout)
    {
        double on = 0, total = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            double v = Math.Max(0, scores[i]);
            total += v;
            if (ImageRegions.IsNewline(layout, i)) on += v;
        }
        return total > 0 ? on / total : 0;
    }
}
