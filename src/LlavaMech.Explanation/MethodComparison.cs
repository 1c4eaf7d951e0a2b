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
public sealed record MethodResult(string Method, float[] Scores, double TimeMs, FaithfulnessCurve Deletion, FaithfulnessCurve Insertion,
    bool? PointingHit, double? MassInBox);

/// <summary>All methods on one example, plus what the example was.</summary>
/// <param name="Patches">image tokens P: the length of every method's scores.</param>
/// <param name="Layout">the input's image-token layout: which patch each of the P scores belongs to.</param>
public sealed record ExampleComparison(string ExampleId, int TargetId, double TargetProb, int Patches, ImageTokenLayout Layout,
    IReadOnlyList<(int Row, int Col)>? ObjectPatches, IReadOnlyList<MethodResult> Methods)
{
    /// <summary>The model's answer: the argmax token at the last position.</summary>
    public int Argmax { get; init; } = -1;

    /// <summary>Whether the answer is the expected one (null when the manifest gives none).</summary>
    public bool? Correct { get; init; }

    /// <summary>The side of the (single, square) patch grid.</summary>
    public int GridSide => Layout.Grid.Side;

    /// <summary>
    /// The object's patches as a share of all patches (null without a box): the chance rate of the
    /// pointing game (a top patch drawn uniformly at random hits the object this often) and the mass
    /// in the object of a uniform map.
    /// </summary>
    public double? ObjectAreaShare => ObjectPatches is null ? null : (double)ObjectPatches.Count / Patches;
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
        IReadOnlyList<(int Row, int Col)>? objectPatches = objectBox is null ? null
            : ClipImageProcessor.BoxToPatches(input.Image.Geometry, objectBox[0], objectBox[1], objectBox[2], objectBox[3], model.Config.Vision!.PatchSize);

        var ctx = new ImageTokenAttribution(model, input, s.TargetId, options.BatchSize);
        var results = new List<MethodResult>();
        void Add(string method, float[] scores, double ms)
        {
            var (del, ins) = Faithfulness.Curves(ctx, scores, options.CurveSteps);
            results.Add(new MethodResult(method, scores, ms, del, ins,
                objectPatches is null ? null : PointingHit(scores, layout, objectPatches),
                objectPatches is null ? null : MassInBox(scores, layout, objectPatches)));
        }

        double toolMs = analysis.ForwardMs + analysis.StatisticsMs;
        if (Wants(LogIncreaseTop1)) Add(LogIncreaseTop1, Heatmaps.LogIncrease(s, 1), toolMs);
        if (Wants(LogIncreaseTopK)) Add(LogIncreaseTopK, Heatmaps.LogIncrease(s, options.TopKHeads), toolMs);
        if (Wants(RawAttention)) Add(RawAttention, Heatmaps.RawAttention(s), analysis.ForwardMs);
        var sw = new Stopwatch();
        if (Wants(GradientXInput)) { sw.Restart(); var g = ctx.GradientTimesInput(); Add(GradientXInput, g, sw.Elapsed.TotalMilliseconds); }
        if (Wants(IntegratedGradients)) { sw.Restart(); var ig = ctx.IntegratedGradients(options.IntegratedGradientSteps); Add(IntegratedGradients, ig, sw.Elapsed.TotalMilliseconds); }
        if (Wants(Occlusion)) { sw.Restart(); var oc = ctx.Occlusion(options.OcclusionWindow); Add(Occlusion, oc, sw.Elapsed.TotalMilliseconds); }
        return new ExampleComparison(exampleId, s.TargetId, Math.Exp(s.TargetLogProb), patches, layout, objectPatches, results) { Argmax = s.Top5Ids[0] };
    }

    /// <summary>The highest-scoring image token (first on ties) is a patch of the object.</summary>
    public static bool PointingHit(float[] scores, ImageTokenLayout layout, IReadOnlyList<(int Row, int Col)> objectPatches)
    {
        int best = 0;
        for (int i = 1; i < scores.Length; i++) if (scores[i] > scores[best]) best = i;
        return layout.CellOf(best) is { } cell && objectPatches.Contains((cell.Row, cell.Col));
    }

    /// <summary>Share of the positive mass of the map inside the object's patches (0 when there is no positive mass).</summary>
    public static double MassInBox(float[] scores, ImageTokenLayout layout, IReadOnlyList<(int Row, int Col)> objectPatches)
    {
        double inside = 0, total = 0;
        var set = objectPatches.ToHashSet();
        for (int i = 0; i < scores.Length; i++)
        {
            double v = Math.Max(0, scores[i]);
            total += v;
            if (layout.CellOf(i) is { } cell && set.Contains((cell.Row, cell.Col))) inside += v;
        }
        return total > 0 ? inside / total : 0;
    }
}
