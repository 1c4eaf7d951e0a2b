using LlavaMech.Model.Tests;
using static TorchSharp.torch;

namespace LlavaMech.Hooks.Tests;

/// <summary>
/// What a cache keeps from a real hooked pass of tests/fixtures/tiny-llava-mha, against the reference activations in
/// the fixture's golden files (layer_inputs, attn_outputs, ffn_outputs, attn_weights, image_features,
/// final_output_prenorm), within docs/METHOD.md's 1e-3 ("Golden files").
/// </summary>
public class ActivationCacheTests
{
    private const string Model = "tiny-llava-mha";

    [Fact]
    public void Explicit_positions_keep_exactly_the_reference_rows_of_a_real_pass()
    {
        var m = ModelCache.Get(Model);
        using var g = new Golden(Model, "circle");
        using var scope = NewDisposeScope();
        var input = m.Prepare(g.Prompt, g.ImagePath);
        int T = input.SeqLen;
        var rows = PositionSelector.At([2, 40, -1]);
        var plan = new CapturePlan()
            .Add(HookNames.Embed, PositionSelector.At(input.ImagePositions))
            .Add(HookNames.ImageFeatures, PositionSelector.At([0, -1]))
            .Add(HookNames.AttnPattern(1), PositionSelector.At([10, -1]));
        for (int l = 0; l < m.Layers; l++)
        {
            plan.Add(HookNames.ResidPre(l), rows);
            plan.Add(HookNames.ResidMid(l), PositionSelector.Last);
            plan.Add(HookNames.ResidPost(l), PositionSelector.Last);
        }
        using var cache = new ActivationCache(plan);
        m.Forward(input, cache);

        var keep = tensor(new long[] { 2, 40, T - 1 });
        var layerInputs = g["layer_inputs"];      // [L, T, D]
        var attnOut = g["attn_outputs"];
        var ffnOut = g["ffn_outputs"];
        var features = g["image_features"];       // [P, D]

        // The image tokens' embeddings are the projector outputs, at the reference's image positions.
        Assert.Equal([1L, 36, 64], cache[HookNames.Embed].shape);
        Close.Assert(features, cache[HookNames.Embed][0], "hook_embed at the image positions = image_features");
        Close.Assert(features.index_select(0, tensor(new long[] { 0, 35 })), cache[HookNames.ImageFeatures][0], "image features 0 and -1");

        for (int l = 0; l < m.Layers; l++)
        {
            Assert.Equal([1L, 3, 64], cache[HookNames.ResidPre(l)].shape);
            Close.Assert(layerInputs[l].index_select(0, keep), cache[HookNames.ResidPre(l)][0], $"x_{l} at positions 2, 40, T-1");
            var mid = layerInputs[l][T - 1] + attnOut[l][T - 1];
            Close.Assert(mid.unsqueeze(0), cache[HookNames.ResidMid(l)][0], $"x_{l} + a_{l} at T-1");
            var post = l + 1 < m.Layers ? layerInputs[l + 1][T - 1] : g["final_output_prenorm"][T - 1];
            Close.Assert(post.unsqueeze(0), cache[HookNames.ResidPost(l)][0], $"x_{l + 1} at T-1");
            Close.Assert(mid + ffnOut[l][T - 1], cache[HookNames.ResidPost(l)][0][0], $"x_{l} + a_{l} + f_{l} at T-1");
        }

        // Pattern hooks select query rows: rows 10 and T-1 of layer 1's [H, T, T] reference pattern.
        Assert.Equal([1L, 4, 2, T], cache[HookNames.AttnPattern(1)].shape);
        Close.Assert(g["attn_weights"][1].index_select(1, tensor(new long[] { 10, T - 1 })), cache[HookNames.AttnPattern(1)][0], "layer 1 pattern rows 10, T-1");
        Assert.Equal(1.0, cache[HookNames.AttnPattern(1)][0].sum(-1).min().item<float>(), 5);
    }

    [Fact]
    public void Order_is_forward_order_and_only_planned_hooks_are_kept()
    {
        var m = ModelCache.Get(Model);
        using var g = new Golden(Model, "circle");
        using var scope = NewDisposeScope();
        // Added in reverse: the cache's order is the pass's, not the plan's.
        var plan = new CapturePlan()
            .Add(HookNames.ResidFinal, PositionSelector.Last)
            .Add(HookNames.MlpOut(3), PositionSelector.Last)
            .Add(HookNames.AttnV(0))
            .Add(HookNames.ImageFeatures);
        using var cache = new ActivationCache(plan);
        m.Forward(m.Prepare(g.Prompt, g.ImagePath), cache);
        Assert.Equal([HookNames.ImageFeatures, HookNames.AttnV(0), HookNames.MlpOut(3), HookNames.ResidFinal], cache.Order);
        Assert.False(cache.Contains(HookNames.MlpOut(2)));
        Assert.False(cache.Wants(HookNames.MlpOut(2)));
        var e = Assert.Throws<KeyNotFoundException>(() => cache[HookNames.MlpOut(2)]);
        Assert.Contains("'blocks.2.hook_mlp_out' was not captured", e.Message);
        Assert.Contains(HookNames.ResidFinal, e.Message);
        Close.Assert(g["ffn_outputs"][3][-1], cache[HookNames.MlpOut(3)][0][0], "f_3 at T-1");
    }

    [Fact]
    public void A_text_only_pass_keeps_no_image_features_even_when_planned()
    {
        var m = ModelCache.Get(Model);
        using var g = new Golden(Model, "llava_text_sky");
        using var scope = NewDisposeScope();
        using var cache = new ActivationCache(CapturePlan.ForLastPositionAnalysis(m.Layers, hasVision: true));
        var input = m.Prepare(g.Prompt, null);
        Assert.Equal(7, input.SeqLen);
        Assert.Empty(input.ImagePositions);
        m.Forward(input, cache);
        Assert.False(cache.Contains(HookNames.ImageFeatures));
        Assert.Equal(6 * m.Layers + 1, cache.Order.Count);
        Close.Assert(g["final_output_prenorm"][-1].unsqueeze(0), cache[HookNames.ResidFinal][0], "h_L at T-1");
        Assert.Equal([1L, 7, 4, 16], cache[HookNames.AttnV(2)].shape);
    }

    [Fact]
    public void Batch_rows_of_one_pass_each_equal_the_reference()
    {
        var m = ModelCache.Get(Model);
        using var g = new Golden(Model, "square_wide");
        using var scope = NewDisposeScope();
        var input = m.Prepare(g.Prompt, g.ImagePath);
        var (ids, pixels) = m.ToTensors([input, input]);
        using var cache = new ActivationCache(new CapturePlan().Add(HookNames.ResidPre(2), PositionSelector.Last).Add(HookNames.MlpOut(1)));
        m.Forward(ids, pixels, cache);
        Assert.Equal([2L, 1, 64], cache[HookNames.ResidPre(2)].shape);
        Assert.Equal([2L, input.SeqLen, 64], cache[HookNames.MlpOut(1)].shape);
        for (int b = 0; b < 2; b++)
        {
            Close.Assert(g["layer_inputs"][2][-1].unsqueeze(0), cache[HookNames.ResidPre(2)][b], $"batch row {b}: x_2 at T-1");
            Close.Assert(g["ffn_outputs"][1], cache[HookNames.MlpOut(1)][b], $"batch row {b}: f_1");
        }
    }

    [Fact]
    public void The_cache_owns_detached_copies_that_outlive_the_pass_scope_until_it_is_disposed()
    {
        var m = ModelCache.Get(Model);
        using var g = new Golden(Model, "circle");
        var cache = new ActivationCache(new CapturePlan().Add(HookNames.ResidPre(1), PositionSelector.Last));
        using (NewDisposeScope())
            m.Forward(m.Prepare(g.Prompt, g.ImagePath), cache);
        // The scope of the pass is gone; the kept row is not.
        var kept = cache[HookNames.ResidPre(1)];
        Assert.False(kept.IsInvalid);
        using (NewDisposeScope())
            Close.Assert(g["layer_inputs"][1][-1].unsqueeze(0), kept[0], "x_1 at T-1 after the pass's scope");

        cache.Dispose();
        Assert.True(kept.IsInvalid);
        Assert.Empty(cache.Order);
        Assert.False(cache.Contains(HookNames.ResidPre(1)));
    }

    [Fact]
    public void Offer_selects_along_the_given_axis_copies_and_replaces_and_Put_keeps_only_wanted_hooks()
    {
        using var scope = NewDisposeScope();
        var plan = new CapturePlan()
            .Add(HookNames.AttnOut(0), PositionSelector.At([1, -1]))
            .Add(HookNames.AttnV(0))
            .Add(HookNames.AttnPattern(0), PositionSelector.Last);
        using var cache = new ActivationCache(plan);

        var x = arange(2 * 5 * 3, dtype: ScalarType.Float32).reshape(2, 5, 3).requires_grad_(true);   // [B, T, D]
        cache.Offer(HookNames.AttnOut(0), x);
        Assert.Equal([2L, 2, 3], cache[HookNames.AttnOut(0)].shape);
        Assert.Equal(new float[] { 3, 4, 5, 12, 13, 14, 18, 19, 20, 27, 28, 29 }, cache[HookNames.AttnOut(0)].data<float>().ToArray());
        Assert.False(cache[HookNames.AttnOut(0)].requires_grad);

        // Every position: a copy, not a view of the producer's tensor.
        var v = ones(1, 4, 2, 3);
        cache.Offer(HookNames.AttnV(0), v);
        v.mul_(7);
        Assert.Equal(1f, cache[HookNames.AttnV(0)].max().item<float>());

        // A second offer of the same hook replaces the first and keeps one place in the order.
        cache.Offer(HookNames.AttnV(0), full(1, 4, 2, 3, 2f));
        Assert.Equal(2f, cache[HookNames.AttnV(0)].min().item<float>());
        Assert.Equal([HookNames.AttnOut(0), HookNames.AttnV(0)], cache.Order);

        // Another axis: [B, H, T, T] patterns offered along the query axis 2.
        var pattern = arange(1 * 2 * 4 * 4, dtype: ScalarType.Float32).reshape(1, 2, 4, 4);
        cache.Offer(HookNames.AttnPattern(0), pattern, seqAxis: 2);
        Assert.Equal([1L, 2, 1, 4], cache[HookNames.AttnPattern(0)].shape);
        Assert.Equal(new float[] { 12, 13, 14, 15, 28, 29, 30, 31 }, cache[HookNames.AttnPattern(0)].data<float>().ToArray());
        Assert.Equal([3L], cache.QueryRows(HookNames.AttnPattern(0), 4)!);
        Assert.Null(cache.QueryRows(HookNames.AttnV(0), 4));

        // Hooks outside the plan cost nothing: neither Offer nor Put keeps them.
        cache.Offer(HookNames.MlpOut(0), x);
        cache.Put(HookNames.MlpPost(0), x);
        Assert.Equal(3, cache.Order.Count);
        Assert.False(cache.Contains(HookNames.MlpOut(0)));
        Assert.False(cache.Contains(HookNames.MlpPost(0)));

        // Put keeps a producer-selected tensor as it is.
        cache.Put(HookNames.AttnPattern(0), pattern.narrow(2, 0, 2));
        Assert.Equal([1L, 2, 2, 4], cache[HookNames.AttnPattern(0)].shape);
    }
}
