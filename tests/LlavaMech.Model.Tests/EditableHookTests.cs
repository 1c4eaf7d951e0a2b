using System.Diagnostics;
using LlavaMech.Hooks;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Model.Tests;

/// <summary>Hook points that can replace their tensor: identity edits, context, vision points, cost of unused points.</summary>
[Collection(TimingCollection.Name)]
public class EditableHookTests
{
    private const string Model = "tiny-llava-mha";
    private const string Prompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";

    /// <summary>Every point except scores and pattern (which switch attention to its eager path).</summary>
    private static IEnumerable<string> FusedPathPoints(IHookedModel m) =>
        HookNames.AllPoints(m.Layers, m.VisionLayersRun).Where(h => HookNames.SequenceAxis(h) == 1);

    [Theory]
    [InlineData("tiny-llava-mha", true)]
    [InlineData("tiny-llava-336", true)]
    [InlineData("tiny-vicuna", false)]
    public void Identity_edits_at_every_point_give_bit_identical_logits(string model, bool image)
    {
        var m = ModelCache.Get(model);
        using var scope = NewDisposeScope();
        var input = image
            ? m.Prepare(Prompt, Fixtures.File(model, model == "tiny-llava-336" ? "photo_640x427.png" : "red_circle.png"))
            : m.Prepare("The color of the sky is", null);
        var plain = m.Forward(input);
        int calls = 0;
        var edits = new HookEdits().Add(FusedPathPoints(m), (x, _) => { calls++; return x; });
        var edited = m.Forward(input, edits);
        Assert.Equal(0.0, Close.MaxAbs(plain, edited));
        int expected = FusedPathPoints(m).Count(h => image || !h.StartsWith("vision.", StringComparison.Ordinal));
        Assert.Equal(expected, calls);

        // Scores and pattern take the eager path: an identity edit there agrees with the fused pass to float rounding.
        var eager = m.Forward(input, new HookEdits().Add(Enumerable.Range(0, m.Layers).Select(HookNames.AttnScores), (x, _) => x));
        Assert.True(Close.MaxAbs(plain, eager) < 1e-5, $"eager vs fused logits differ by {Close.MaxAbs(plain, eager):G3}");
    }

    [Fact]
    public void A_hook_sees_positions_layer_and_image_layout_and_edits_then_captures_in_one_pass()
    {
        var m = ModelCache.Get(Model);
        using var scope = NewDisposeScope();
        var input = m.Prepare(Prompt, Fixtures.File(Model, "red_circle.png"));
        var seen = new List<(string Hook, int Layer)>();
        HookContext? last = null;
        var edits = new HookEdits()
            .Add(HookNames.AttnZ(1), (z, ctx) => { seen.Add((ctx.Hook, ctx.Layer)); last = ctx; return z.index_fill(2, tensor(new long[] { 2 }), 0); })
            .Add(HookNames.ResidPre(3), (x, ctx) => { seen.Add((ctx.Hook, ctx.Layer)); return x; });
        using var cache = new ActivationCache(new CapturePlan().Add(HookNames.AttnZ(1)).Add(HookNames.AttnQ(0)).Add(HookNames.AttnK(0)));
        var logits = m.Forward(input, new HookChain(edits, cache));
        Assert.Equal([(HookNames.AttnZ(1), 1), (HookNames.ResidPre(3), 3)], seen);
        Assert.NotNull(last);
        Assert.Equal(input.SeqLen, last!.SeqLen);
        Assert.Equal(1, last.Batch);
        Assert.True(last.IsCausal);
        Assert.Equal(Enumerable.Range(0, input.SeqLen).Select(i => (long)i).ToArray(), last.PositionIds.data<long>().ToArray());
        Assert.Equal(input.ImagePositions, last.ImagePositions());
        Assert.Equal(input.ImageLayout, last.ImageLayouts![0]);
        // The cache after the edit keeps what the pass used: head 2 of layer 1 is zero, head 1 is not.
        var z = cache[HookNames.AttnZ(1)];
        Assert.Equal([1L, input.SeqLen, 4, 16], z.shape);
        Assert.Equal(0.0, z.select(2, 2).abs().max().item<float>());
        Assert.True(z.select(2, 1).abs().max().item<float>() > 0);
        Assert.Equal([1L, input.SeqLen, 4, 16], cache[HookNames.AttnQ(0)].shape);
        Assert.Equal([1L, input.SeqLen, 4, 16], cache[HookNames.AttnK(0)].shape);
        // ... and the logits are those of the zero ablation of head 1.2.
        var ablated = m.Forward(input, new HookEdits().AblateHeads([(1, 2)], HeadAblation.Zero));
        Assert.Equal(0.0, Close.MaxAbs(ablated, logits));
    }

    [Fact]
    public void Scores_hook_is_pre_softmax_and_masked_and_its_softmax_is_the_reference_pattern()
    {
        var m = ModelCache.Get(Model);
        using var g = new Golden(Model, "circle");
        using var scope = NewDisposeScope();
        var input = m.Prepare(g.Prompt, g.ImagePath);
        using var cache = new ActivationCache(new CapturePlan().Add(HookNames.AttnScores(2)).Add(HookNames.AttnPattern(2), PositionSelector.Last));
        m.Forward(input, cache);
        var scores = cache[HookNames.AttnScores(2)];                               // [1, H, T, T]
        int t = input.SeqLen;
        Assert.Equal([1L, 4, t, t], scores.shape);
        Assert.True(float.IsNegativeInfinity(scores[0, 0, 0, 1].item<float>()), "a key after its query is masked");
        Close.Assert(g["attn_weights"][2], scores[0].softmax(-1), "softmax(hook_attn_scores) = reference pattern of layer 2");
        Close.Assert(g["attn_weights"][2].select(1, -1), cache[HookNames.AttnPattern(2)][0].select(1, 0), "last pattern row");
    }

    [Fact]
    public void Vision_points_have_their_shapes_and_an_edit_of_the_projector_output_moves_the_logits()
    {
        var m = ModelCache.Get(Model);
        using var scope = NewDisposeScope();
        var circle = m.Prepare(Prompt, Fixtures.File(Model, "red_circle.png"));
        var wide = m.Prepare(Prompt, Fixtures.File(Model, "wide_scene.png"));
        Assert.Equal(2, m.VisionLayersRun);                                         // 3 layers, vision_feature_layer -2
        var plan = new CapturePlan().Add(Enumerable.Range(0, 3).Select(HookNames.VisionResidPost)).Add(HookNames.ProjectorOut);
        using var wideCache = new ActivationCache(plan);
        var wideLogits = m.Forward(wide, wideCache);
        Assert.Equal([1L, 37, 64], wideCache[HookNames.VisionResidPost(0)].shape);  // 6 x 6 patches + class token, Dv 64
        Assert.Equal([1L, 37, 64], wideCache[HookNames.VisionResidPost(1)].shape);
        Assert.False(wideCache.Contains(HookNames.VisionResidPost(2)));               // never run
        Assert.Equal([1L, 36, 64], wideCache[HookNames.ProjectorOut].shape);
        Assert.Equal(HookNames.ProjectorOut, wideCache.Order[^1]);

        // The circle's pass with the wide scene's projector outputs spliced in is the wide scene's pass.
        var source = wideCache[HookNames.ProjectorOut];
        var swapped = m.Forward(circle, new HookEdits().Add(HookNames.ProjectorOut, (_, _) => source));
        var clean = m.Forward(circle);
        Assert.True(Close.MaxAbs(clean, wideLogits) > 1e-2, "the two images give different logits");
        Assert.Equal(0.0, Close.MaxAbs(wideLogits, swapped));

        // An edit inside the tower moves the logits too.
        var zeroed = m.Forward(circle, new HookEdits().Add(HookNames.VisionResidPost(1), (x, _) => zeros_like(x)));
        Assert.True(Close.MaxAbs(clean, zeroed) > 1e-2);
    }

    /// <summary>A consumer that wants nothing: counts the questions, fails if a point is ever applied.</summary>
    private sealed class WantsNothing : IHookSet
    {
        public int Asked;
        public bool Wants(string hook) { Asked++; return false; }
        public Tensor Apply(string hook, Tensor value, HookContext context) => throw new InvalidOperationException($"'{hook}' was applied");
    }

    [Fact]
    public void Unused_points_cost_a_lookup_and_nothing_else()
    {
        var m = ModelCache.Get("tiny-llava-336");
        using var g = new Golden("tiny-llava-336", "photo");
        using var scope = NewDisposeScope();
        var input = m.Prepare(g.Prompt, g.ImagePath);
        var nothing = new WantsNothing();
        var plain = m.Forward(input);
        var asked = m.Forward(input, nothing);
        Assert.Equal(0.0, Close.MaxAbs(plain, asked));
        // Every point asked exactly once (scores and pattern by the attention's path choice); none applied.
        Assert.Equal(HookNames.AllPoints(m.Layers, m.VisionLayersRun).Count, nothing.Asked);

        // Timing (601 positions): a pass with an empty edit set against a plain pass, the fastest of interleaved runs (the
        // minimum, not the median: other test classes run in parallel and only add time).
        var empty = new HookEdits();
        double Time(IHookSet? hooks)
        {
            using var s = NewDisposeScope();
            var sw = Stopwatch.StartNew();
            m.Forward(input, hooks);
            return sw.Elapsed.TotalMilliseconds;
        }
        for (int i = 0; i < 3; i++) { Time(null); Time(empty); }
        var plainMs = new List<double>(); var emptyMs = new List<double>();
        for (int i = 0; i < 15; i++) { plainMs.Add(Time(null)); emptyMs.Add(Time(empty)); }
        double p = plainMs.Min(), e = emptyMs.Min();
        Console.WriteLine($"tiny-llava-336 forward, fastest of 15: plain {p:F2} ms, empty hook set {e:F2} ms");
        // One lookup per hook point costs microseconds; a real regression (no fused kernel, a T x T pattern kept) costs
        // a multiple of the pass. The bound leaves room for a shared CI machine.
        Assert.True(e < 1.5 * p + 3, $"an empty hook set made the pass slower: {e:F2} ms vs {p:F2} ms");
    }
}
