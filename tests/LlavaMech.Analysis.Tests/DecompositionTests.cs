using LlavaMech.Hooks;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaMech.Analysis.Tests;

/// <summary>Identities of the decomposition and the pieces of the API, on the golden activations and on synthetic GQA.</summary>
public class DecompositionTests
{
    private readonly ITestOutputHelper _out;
    public DecompositionTests(ITestOutputHelper output) => _out = output;

    public static IEnumerable<object[]> Cases => GoldenCase.Cases;

    [Theory]
    [MemberData(nameof(Cases))]
    public void Readout_logits_of_the_final_residual_are_the_model_logits(string model, string id)
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load(model, id);
        var m = TinyModel.Load(model);
        using var readout = FrozenScaleReadout.Create(m.Readout(), g.T["final_output_prenorm"][g.SeqLen - 1]);
        Check.CloseTT(g.T["logits_last"], readout.Logits(g.T["final_output_prenorm"][g.SeqLen - 1]), $"{model}/{id} logits_last");
        Assert.Equal(g.TargetId, readout.Target);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Head_contributions_sum_to_the_attention_output_and_mlp_post_to_the_mlp_output(string model, string id)
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load(model, id);
        var m = TinyModel.Load(model);
        var acts = g.Activations(m);
        var w = m.Readout();
        var c = HeadContributions.PerHead(acts, w);                                   // [L, H, D]
        Check.CloseTT(acts.AttnOut, c.sum(dim: 1), $"{model}/{id} sum_h c_lh == a_l", 1e-4);
        // Position contributions of a head sum to its head contribution.
        var heads = Enumerable.Range(0, m.Layers).SelectMany(l => Enumerable.Range(0, m.Heads).Select(h => new HeadIndex(l, h))).ToArray();
        var perPos = HeadContributions.PerPosition(acts, w, heads);                  // [L*H, T, D]
        Check.CloseTT(c.reshape(m.Layers * m.Heads, -1), perPos.sum(dim: 1), $"{model}/{id} sum_p c_lhp == c_lh", 1e-4);
        for (int l = 0; l < m.Layers; l++)
        {
            var f = nn.functional.linear(acts.MlpPost[l], m.Lm($"layers.{l}.mlp.down_proj.weight"));
            Check.CloseTT(acts.MlpOut[l], f, $"{model}/{id} down_proj(m) == f_{l}", 1e-4);
        }
    }

    [Fact]
    public void Grouped_query_attention_reads_kv_head_h_over_group_size()
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load("tiny-llava-mha", "circle");
        var m = TinyModel.Load("tiny-llava-mha");
        var acts = g.Activations(m);
        int L = m.Layers, H = m.Heads, KV = 2, G = H / KV, d = m.HeadDim;
        long T = acts.Positions;
        // KV = 2: average value heads (0,1) and (2,3).
        var v2 = acts.Values.reshape(L, T, KV, G, d).mean(new long[] { 3 });           // [L, T, 2, d]
        var gqa = acts with { Values = v2 };
        var w = m.Readout() with { NumKeyValueHeads = KV };
        gqa.Validate(w);
        var c = HeadContributions.PerHead(gqa, w);                                     // [L, H, D]
        for (int l = 0; l < L; l++)
        {
            // Direct: repeat kv heads to H query heads, attention-weighted sum, concatenate heads, o_proj.
            var vRep = v2[l].repeat_interleave(G, dim: 1);                             // [T, H, d]
            var o = einsum("ht,thk->hk", acts.PatternLastRow[l], vRep);                 // [H, d]
            var wo = w.OProj[l];
            var direct = nn.functional.linear(o.reshape(H * d), wo);                    // [D]
            Check.CloseTT(direct, c[l].sum(dim: 0), $"GQA layer {l}: sum over heads == o_proj(attention output)", 1e-4);
            for (int h = 0; h < H; h++)
            {
                var head = wo.narrow(1, h * d, d).matmul(o[h]);
                Check.CloseTT(head, c[l, h], $"GQA layer {l} head {h}", 1e-4);
            }
        }
        // Positions of a GQA head: head 3 reads kv head 1.
        var pos = HeadContributions.PerPosition(gqa, w, new[] { new HeadIndex(2, 3) });   // [1, T, D]
        var expected = (acts.PatternLastRow[2, 3].unsqueeze(1) * v2[2].select(1, 1)).matmul(w.OProj[2].narrow(1, 3 * d, d).t());
        Check.CloseTT(expected, pos[0], "GQA positions of head 2_3", 1e-5);
        // And the whole pipeline runs with KV < H.
        var s = Statistics.Compute(gqa, w);
        Assert.Equal(L, s.HeadIncrease.Length);
        Assert.Equal(3, s.TopHeads.Length);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Screened_neurons_recall_the_exact_top_neurons(string model, string id)
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load(model, id);
        var m = TinyModel.Load(model);
        var acts = g.Activations(m);
        var w = m.Readout();
        var exact = Statistics.Compute(acts, w, new StatisticsOptions { Neurons = new NeuronOptions(NeuronRoute.Exact) }).Neurons!;
        int total = m.Layers * m.Intermediate;
        int k = total / 4;
        var screened = Statistics.Compute(acts, w, new StatisticsOptions { Neurons = new NeuronOptions(NeuronRoute.Screened, ScreenK: k) }).Neurons!;
        Assert.Equal(NeuronRoute.Screened, screened.Route);
        Assert.Equal(k, screened.ExactIndices!.Length);
        // First-order scores are the same on both routes, and candidates are the top-k |first-order|.
        Check.Close(Check.Flat(exact.FirstOrder), Check.Flat(screened.FirstOrder), "first order", 1e-9);
        var byAbs = Check.Flat(exact.FirstOrder).Select((v, i) => (v: Math.Abs(v), i)).OrderByDescending(t => t.v).Take(k).Select(t => t.i).OrderBy(i => i);
        Assert.Equal(byAbs, screened.ExactIndices);
        var r = Statistics.Recall(screened, exact, 10);
        _out.WriteLine($"{model}/{id}: K={k}/{total} recall@10 +{r.Positive:F2} -{r.Negative:F2}, candidate diff {r.MaxCandidateDifference:G3}, first-order corr {r.FirstOrderCorrelation:F4}");
        Assert.True(r.MaxCandidateDifference < 1e-5, $"candidate exact scores differ from the exact route by {r.MaxCandidateDifference}");
        Assert.True(r.FirstOrderCorrelation > 0.8, $"first-order correlation {r.FirstOrderCorrelation}");
        Assert.True(r.Positive >= 0.9 && r.Negative >= 0.9, $"recall@10 positive {r.Positive}, negative {r.Negative}");
        // Exact route against itself: perfect recall.
        var self = Statistics.Recall(exact, exact, 10);
        Assert.Equal(1.0, self.Positive);
        Assert.Equal(1.0, self.Negative);
        // Auto picks exact for the tiny models and screened past the budget.
        Assert.Equal(NeuronRoute.Exact, NeuronAttribution.ChooseRoute(m.Layers, m.Intermediate, m.Vocab, new NeuronOptions()));
        Assert.Equal(NeuronRoute.Screened, NeuronAttribution.ChooseRoute(32, 11008, 32064, new NeuronOptions()));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_screen_that_keeps_the_best_few_stops_early_and_keeps_the_same_neurons(string model, string id)
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load(model, id);
        var m = TinyModel.Load(model);
        var golden = g.Activations(m);
        var w = m.Readout();
        // As the golden pass, and with every MLP coefficient 30 times larger: large neuron terms, far from first order, so
        // the screen needs several chunks before the bound stops it.
        foreach (double gain in new[] { 1.0, 30.0 })
            KeepTheSameNeurons(golden with { MlpPost = golden.MlpPost * gain }, w, m, $"{model}/{id} x{gain}");
    }

    private void KeepTheSameNeurons(LastPositionActivations acts, ReadoutWeights w, TinyModel m, string what)
    {
        var exact = Statistics.Compute(acts, w, new StatisticsOptions { Neurons = new NeuronOptions(NeuronRoute.Exact) }).Neurons!;
        // The bound the screen stops on: every neuron's exact score is at most its first-order score (Jensen).
        var ex = Check.Flat(exact.Scores);
        var fo = Check.Flat(exact.FirstOrder);
        double worst = ex.Zip(fo, (e, f) => e - f).Max();
        Assert.True(worst <= 1e-6, $"{what}: an exact score exceeds its first-order bound by {worst}");
        int total = m.Layers * m.Intermediate, k = total / 2;
        foreach (int keep in new[] { 1, 5, 20 })
        {
            var all = Statistics.Compute(acts, w, new StatisticsOptions { Neurons = new NeuronOptions(NeuronRoute.Screened, ScreenK: k) }).Neurons!;
            var kept = Statistics.Compute(acts, w, new StatisticsOptions { Neurons = new NeuronOptions(NeuronRoute.Screened, ScreenK: k, Keep: keep) }).Neurons!;
            static List<(int I, double S)> Best(NeuronScores n, int count) => Check.Flat(n.Scores).Select((v, i) => (i, v))
                .Where(t => n.ExactIndices!.Contains(t.i)).OrderByDescending(t => t.v).Take(count).ToList();
            var a = Best(all, keep);
            var b = Best(kept, keep);
            _out.WriteLine($"{what} keep {keep}: scored {kept.ExactIndices!.Length} of {k} candidates; best {b[0].S:G4}");
            Assert.Equal(a.Select(t => t.I), b.Select(t => t.I));
            Check.Close(a.Select(t => t.S).ToArray(), b.Select(t => t.S).ToArray(), $"{what} kept scores", 1e-6);
            Assert.True(kept.ExactIndices!.Length < k, $"{what} keep {keep}: the screen scored all {k} candidates");
            Assert.True(kept.ExactIndices.SequenceEqual(kept.ExactIndices.Order()), "scored indices are sorted");
        }
    }

    [Theory]
    [InlineData("tiny-llava-mha", "circle")]
    [InlineData("tiny-llava-mha", "square_wide")]
    [InlineData("tiny-llava-336", "photo")]
    public void Image_maps_heatmap_and_shares(string model, string id)
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load(model, id);
        var m = TinyModel.Load(model);
        var imgPos = g.T["image_positions"];
        var layout = g.ImageLayout!;
        var s = Statistics.Compute(g.Activations(m), m.Readout(), new StatisticsOptions { ImageLayout = layout });
        var img = s.Image!;
        Assert.Equal(Check.I(imgPos).Select(v => (int)v), img.ImagePositions);
        Assert.Equal(layout.Grid.Rows, img.Heatmap.Length);
        Assert.All(img.Heatmap, row => Assert.Equal(layout.Grid.Cols, row.Length));
        var heat = Check.Flat(img.Heatmap);
        Assert.Equal(1.0, heat.Sum(), 6);
        Assert.Equal(0.0, heat.Min(), 9);
        // Heatmap of the top head from the golden position scores: min-max, then divided by the sum.
        var (tl, th, _) = g.TopHeads[0];
        Assert.Equal(new HeadIndex(tl, th), img.HeatmapHeads.Single());
        var scores = Check.D(g.T[$"position_increase_head_{tl}_{th}"].index_select(0, imgPos));
        double lo = scores.Min(), hi = scores.Max();
        var scaled = scores.Select(v => (v - lo) / (hi - lo)).ToArray();
        double sum = scaled.Sum();
        Check.Close(scaled.Select(v => v / sum).ToArray(), heat, $"{model}/{id} heatmap", 1e-4);
        // Shares: image + text = 1 for every head (softmax rows), image share averages to the baseline's sum.
        var share = Check.Flat(img.ImageAttentionShare).Zip(Check.Flat(img.TextAttentionShare), (a, b) => a + b).ToArray();
        Check.Close(Enumerable.Repeat(1.0, share.Length).ToArray(), share, "image + text share", 1e-5);
        Assert.Equal(img.AttentionBaseline.Sum(), Check.Flat(img.ImageAttentionShare).Average(), 5);
        Assert.Null(img.VisualTokenLens);
    }

    [Fact]
    public void Heatmap_of_several_heads_sums_them_and_full_strategy_drops_cls()
    {
        using var scope = NewDisposeScope();
        var scores = tensor(new double[,] { { 0, 1, 2, 3, 4, 5 }, { 0, 0, 0, 0, 0, 5 } });   // two heads, T = 6
        var cls = ImageTokenLayout.SingleGrid(offset: 1, rows: 2, cols: 2, hasCls: true);         // P = 5 = CLS + 2x2 at positions 1..5
        var h = Check.D(AttentionMaps.LogIncreaseHeatmap(scores, cls));
        // summed over heads at positions 2..5: 2, 3, 4, 10 -> min-max 0, 1/8, 2/8, 1 -> / (11/8)
        Check.Close(new[] { 0, 1 / 11.0, 2 / 11.0, 8 / 11.0 }, h, "two-head heatmap", 1e-12);
        var flat = Check.D(AttentionMaps.LogIncreaseHeatmap(zeros(6, ScalarType.Float64), ImageTokenLayout.SingleGrid(0, 2, 2, hasCls: false)));
        Check.Close(new[] { 0.25, 0.25, 0.25, 0.25 }, flat, "constant heatmap is uniform", 1e-12);
    }

    [Fact]
    public void Heatmap_takes_its_grid_from_the_layout_not_the_token_count()
    {
        using var scope = NewDisposeScope();
        // 2 x 3 patches plus the class token at positions 2..8 of T = 9: P = 7 is no square, nor a square plus one.
        var layout = ImageTokenLayout.SingleGrid(offset: 2, rows: 2, cols: 3, hasCls: true);
        Assert.Equal(7, layout.Count);
        var scores = tensor(new double[] { 9, 9, 100, 0, 1, 2, 3, 4, 5 });
        var h = AttentionMaps.LogIncreaseHeatmap(scores, layout);
        Assert.Equal(new long[] { 2, 3 }, h.shape);
        // the class token's score (100) is no patch and stays out of the min-max: patches 0..5 -> (x - 0) / 5 -> / 3
        Check.Close(new[] { 0, 1 / 15.0, 2 / 15.0, 3 / 15.0, 4 / 15.0, 5 / 15.0 }, Check.D(h), "2 x 3 heatmap", 1e-12);
    }

    [Theory]
    [InlineData("tiny-llava-mha", "circle")]
    [InlineData("tiny-llava-336", "photo")]
    public void Residual_split_adds_up_and_lenses_are_consistent(string model, string id)
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load(model, id);
        var m = TinyModel.Load(model);
        var imgPos = g.T["image_positions"];
        var e = g.T["layer_inputs"][0].index_select(0, imgPos);                 // embeddings at the image positions
        var a = g.T["attn_outputs"].index_select(1, imgPos);                     // [L, P, D]
        var f = g.T["ffn_outputs"].index_select(1, imgPos);
        var layers = Enumerable.Range(0, m.Layers + 1).ToArray();
        var split = LogitLens.ResidualSplit(e, a, f, layers);
        for (int l = 0; l <= m.Layers; l++)
        {
            var expect = l < m.Layers ? g.T["layer_inputs"][l].index_select(0, imgPos) : g.T["final_output_prenorm"].index_select(0, imgPos);
            Check.CloseTT(expect, split.Resid[l], $"resid_{l} == layer input", 1e-3);
            Check.CloseTT(split.Resid[l], split.AttentionPart[l] + split.FfnPart[l] + e, $"attn + ffn + E == resid_{l}", 1e-4);
        }
        Check.CloseTT(zeros_like(e), split.AttentionPart[0], "no attention part before layer 0", 0);

        var s = Statistics.Compute(g.Activations(m), m.Readout(), new StatisticsOptions
        {
            ImageLayout = g.ImageLayout,
            ImageFeatures = g.T["image_features"],
            ResidualLens = new ResidualLensInputs(e, a, f, new[] { 1, m.Layers }),
            Neurons = new NeuronOptions(NeuronRoute.None),
        });
        Assert.Null(s.Neurons);
        Assert.Equal(new[] { 1, m.Layers }, s.ResidualLens!.Select(r => r.Layer));
        using var readout = FrozenScaleReadout.Create(m.Readout(), g.T["final_output_prenorm"][g.SeqLen - 1]);
        var lensLayerL = s.ResidualLens![1];
        // Resid at layer L through the frozen scale is the model's own readout at the image positions.
        var logits = readout.Logits(g.T["final_output_prenorm"].index_select(0, imgPos));
        var top = Check.I(logits.topk(5, 1).Item2);
        int P = (int)imgPos.shape[0], mismatches = 0;
        for (int p = 0; p < P; p++) if (top[p * 5] != lensLayerL.Resid.TopIds[p][0]) mismatches++;
        Assert.True(mismatches <= P / 50, $"{mismatches} top-1 mismatches");
        var lp = Check.D(logits.log_softmax(1).select(1, s.TargetId));
        Check.Close(lp, lensLayerL.Resid.TargetLogProb, "frozen-scale lens target logprob", 1e-4);
        foreach (var lens in new[] { lensLayerL.Resid, lensLayerL.AttentionPart, lensLayerL.FfnPart, s.Image!.VisualTokenLens! })
            for (int p = 0; p < P; p++)
                Assert.Equal(lens.TopIds[p][0] == s.TargetId, lens.TargetRank[p] == 0);
        Assert.All(s.Image!.VisualTokenLens!.TargetLogProb, v => Assert.True(v < 0));
    }

    [Fact]
    public void A_named_target_replaces_the_argmax()
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load("tiny-llava-mha", "circle");
        var m = TinyModel.Load("tiny-llava-mha");
        var acts = g.Activations(m);
        var top5 = g.JsonInts("top5_ids");
        var s = Statistics.Compute(acts, m.Readout(), new StatisticsOptions { TargetId = top5[1] });
        Assert.Equal(top5[1], s.TargetId);
        Assert.Equal(top5, s.Top5Ids);
        Assert.Equal(Math.Log(g.JsonDoubles("top5_probs")[1]), s.TargetLogProb, 3);
        // Increases now refer to the other token: the layer sums change but telescope to logp(h_L) - logp(x_0).
        double total = s.LayerAttnIncrease.Sum() + s.LayerFfnIncrease.Sum();
        using var readout = FrozenScaleReadout.Create(m.Readout(), acts.ResidFinal, top5[1]);
        double lpx0 = readout.LogProb(acts.ResidPre[0]).item<float>();
        Assert.Equal(s.TargetLogProb - lpx0, total, 3);
    }

    [Fact]
    public void Parameters_that_require_grad_build_no_graph()
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load("tiny-vicuna", "vicuna_sky");
        var m = TinyModel.Load("tiny-vicuna");
        var acts = g.Activations(m);
        var w0 = m.Readout();
        Tensor P(Tensor t) => t.clone().requires_grad_(true);
        var w = w0 with { FinalNorm = P(w0.FinalNorm), LmHead = P(w0.LmHead), OProj = w0.OProj.Select(P).ToArray(), DownProj = w0.DownProj.Select(P).ToArray() };
        using var readout = FrozenScaleReadout.Create(w, acts.ResidFinal);
        var heads = LogProbIncrease.Heads(acts, w, readout);
        var neurons = NeuronAttribution.ExactAll(acts, w, readout);
        Assert.False(heads.requires_grad);
        Assert.False(neurons.Scores.requires_grad);
        Check.CloseT(g.T["head_increase"], Check.D(heads), "heads with grad-requiring parameters");
        Check.CloseT(g.T["neuron_increase"], Check.D(neurons.Scores), "neurons with grad-requiring parameters");
    }

    [Fact]
    public void Bad_shapes_are_rejected()
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load("tiny-llava-mha", "llava_text_sky");
        var m = TinyModel.Load("tiny-llava-mha");
        var acts = g.Activations(m);
        Assert.Throws<ArgumentException>(() => Statistics.Compute(acts with { MlpPost = acts.MlpPost.narrow(1, 0, 5) }, m.Readout()));
        Assert.Throws<ArgumentException>(() => Statistics.Compute(acts, m.Readout() with { NumKeyValueHeads = 3 }));
    }
}
