using LlavaMech.Hooks;
using static TorchSharp.torch;

namespace LlavaMech.Model.Tests;

public class HookTests
{
    /// <summary>Approves the exact, ordered list of hook points a vision pass reaches.</summary>
    [Fact]
    public void A_full_capture_reaches_every_hook_in_forward_order()
    {
        var m = ModelCache.Get("tiny-llava-mha");
        using var g = new Golden("tiny-llava-mha", "circle");
        using var scope = NewDisposeScope();
        using var cache = new ActivationCache(CapturePlan.Everything(m.Layers, hasVision: true));
        m.Forward(m.Prepare(g.Prompt, g.ImagePath), cache);
        var expected = new List<string> { "vision.hook_image_features", "hook_embed" };
        for (int l = 0; l < 4; l++)
            expected.AddRange([$"blocks.{l}.hook_resid_pre", $"blocks.{l}.attn.hook_v", $"blocks.{l}.attn.hook_pattern", $"blocks.{l}.hook_attn_out",
                $"blocks.{l}.hook_resid_mid", $"blocks.{l}.mlp.hook_post", $"blocks.{l}.hook_mlp_out", $"blocks.{l}.hook_resid_post"]);
        expected.Add("hook_resid_final");
        Assert.Equal(expected, cache.Order);
        Assert.Equal(expected, HookNames.All(4, hasVision: true));
    }

    [Fact]
    public void The_analysis_plan_keeps_last_position_rows_and_all_values()
    {
        var m = ModelCache.Get("tiny-llava-mha");
        using var g = new Golden("tiny-llava-mha", "circle");
        using var scope = NewDisposeScope();
        using var cache = new ActivationCache(CapturePlan.ForLastPositionAnalysis(m.Layers, hasVision: true));
        var input = m.Prepare(g.Prompt, g.ImagePath);
        m.Forward(input, cache);
        int t = input.SeqLen;
        Assert.Equal([1L, 1, 64], cache[HookNames.ResidPre(0)].shape);
        Assert.Equal([1L, 1, 176], cache[HookNames.MlpPost(3)].shape);
        Assert.Equal([1L, 4, 1, t], cache[HookNames.AttnPattern(1)].shape);
        Assert.Equal([1L, t, 4, 16], cache[HookNames.AttnV(1)].shape);
        Assert.False(cache.Contains(HookNames.ResidMid(0)));
        // The kept rows are the reference's last-position rows.
        Close.Assert(g["layer_inputs"][2].select(0, -1), cache[HookNames.ResidPre(2)][0][0], "x_2 at the last position");
        Close.Assert(g["attn_weights"][3].select(1, -1), cache[HookNames.AttnPattern(3)][0].select(1, 0), "layer 3 last query row");
    }

    [Fact]
    public void Hooked_and_plain_passes_agree()
    {
        var m = ModelCache.Get("tiny-llava-336");
        using var g = new Golden("tiny-llava-336", "photo");
        using var scope = NewDisposeScope();
        var input = m.Prepare(g.Prompt, g.ImagePath);
        var plain = m.Forward(input);
        using var cache = new ActivationCache(CapturePlan.ForLastPositionAnalysis(m.Layers, hasVision: true));
        var hooked = m.Forward(input, cache);
        Close.Assert(plain, hooked, "logits, plain vs hooked", atol: 1e-5, rtol: 1e-5);
    }
}
