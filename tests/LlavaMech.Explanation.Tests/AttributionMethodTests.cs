using LlavaMech.Model;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Explanation.Tests;

/// <summary>The baselines and faithfulness curves checked against identities they must satisfy.</summary>
public class AttributionMethodTests
{
    private const string Prompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";

    private static (LoadedModel M, ModelInput Input, int Target) Setup()
    {
        var m = EndToEndStatisticsTests.Model("tiny-llava-mha");
        var input = m.Prepare(Prompt, Fixtures.File("tiny-llava-mha", "red_circle.png"));
        using var scope = NewDisposeScope();
        int target = (int)m.Forward(input).argmax().item<long>();
        return (m, input, target);
    }

    [Fact]
    public void Integrated_gradients_are_complete()
    {
        var (m, input, target) = Setup();
        using var scope = NewDisposeScope();
        var ctx = new ImageTokenAttribution(m, input, target, batchSize: 16);
        var ig = ctx.IntegratedGradients(steps: 64);
        double allRemoved = ctx.TargetLogProbs(ctx.WithPatchesRemoved(ones(1, ctx.Patches, dtype: ScalarType.Bool)))[0];
        double expected = ctx.OriginalLogProb() - allRemoved;
        // Completeness: attributions sum to f(x) - f(x0), up to the Riemann error of 64 midpoint steps.
        Assert.True(Math.Abs(ig.Sum() - expected) < 0.02 * Math.Abs(expected) + 1e-3, $"sum of IG {ig.Sum():G5} vs f(x) - f(x0) {expected:G5}");
        Assert.True(Math.Abs(expected) > 1e-3, "the test needs the image to matter");
    }

    [Fact]
    public void Gradient_times_input_equals_a_finite_difference()
    {
        var (m, input, target) = Setup();
        using var scope = NewDisposeScope();
        var ctx = new ImageTokenAttribution(m, input, target);
        var gxi = ctx.GradientTimesInput();
        // sum_p grad_p . x_p is the derivative of f((1 + e) x_image) at e = 0.
        const double eps = 1e-3;
        var (ids, pixels) = m.ToTensors(input);
        Tensor embeds;
        using (inference_mode()) embeds = m.Embed(ids, pixels).clone();
        var isImage = zeros(1, input.SeqLen, 1);
        foreach (var p in input.ImagePositions) isImage[0, p, 0] = 1;
        double F(double e) => ctx.TargetLogProbs(embeds * (1 + e * isImage))[0];
        double fd = (F(eps) - F(-eps)) / (2 * eps);
        Assert.True(Math.Abs(gxi.Sum() - fd) < 0.01 * Math.Abs(fd) + 1e-3, $"sum of gradient x input {gxi.Sum():G5} vs finite difference {fd:G5}");
    }

    [Fact]
    public void Occlusion_of_one_patch_is_the_drop_in_log_probability()
    {
        var (m, input, target) = Setup();
        using var scope = NewDisposeScope();
        var ctx = new ImageTokenAttribution(m, input, target, batchSize: 8);
        var drops = ctx.Occlusion(window: 1);
        Assert.Equal(36, drops.Length);
        int best = Array.IndexOf(drops, drops.Max());
        var mask = zeros(1, 36, dtype: ScalarType.Bool);
        mask[0, best] = true;
        double direct = ctx.OriginalLogProb() - ctx.TargetLogProbs(ctx.WithPatchesRemoved(mask))[0];
        Assert.Equal(direct, drops[best], 5);
        // A 3x3 window removes more of the image than one patch: its drops differ.
        var window = ctx.Occlusion(window: 3);
        Assert.NotEqual(drops[best], window[best]);
    }

    [Fact]
    public void Deletion_and_insertion_curves_meet_at_their_ends_and_batching_does_not_change_results()
    {
        var (m, input, target) = Setup();
        using var scope = NewDisposeScope();
        var ctx = new ImageTokenAttribution(m, input, target, batchSize: 5);
        var scores = ctx.Occlusion();
        var (del, ins) = Faithfulness.Curves(ctx, scores, steps: 12);
        double p0 = Math.Exp(ctx.OriginalLogProb());
        Assert.Equal(p0, del.Probabilities[0], 6);                 // nothing removed
        Assert.Equal(p0, ins.Probabilities[^1], 6);                // everything restored
        Assert.Equal(del.Probabilities[^1], ins.Probabilities[0], 6); // all removed, both ways
        Assert.Equal(13, del.Fractions.Length);
        var single = new ImageTokenAttribution(m, input, target, batchSize: 1);
        var (del1, _) = Faithfulness.Curves(single, scores, steps: 12);
        for (int i = 0; i < 13; i++) Assert.Equal(del.Probabilities[i], del1.Probabilities[i], 5);
        // Occlusion order deletes the patches that matter most first: its curve starts by falling.
        Assert.True(del.Probabilities[1] <= del.Probabilities[0] + 1e-9);
    }
}
