using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaMech.Analysis.Tests;

/// <summary>Every statistic of every golden case against the reference, within 1e-3 (docs/METHOD.md, "Golden files").</summary>
public class GoldenStatisticsTests : IDisposable
{
    public GoldenStatisticsTests(ITestOutputHelper output) => Check.Log = output.WriteLine;

    public void Dispose() => Check.Log = null;

    public static IEnumerable<object[]> Cases => GoldenCase.Cases;

    private static (GoldenCase G, TinyModel M, LastPositionActivations A, ReadoutWeights W) Setup(string model, string id)
    {
        var g = GoldenCase.Load(model, id);
        var m = TinyModel.Load(model);
        return (g, m, g.Activations(m), m.Readout());
    }

    private static StatisticsOptions OptionsFor(GoldenCase g) => new()
    {
        ImageLayout = g.ImageLayout,
        ImageFeatures = g.HasImage ? g.T["image_features"] : null,
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Statistics_match_the_golden(string model, string id)
    {
        using var scope = NewDisposeScope();
        var (g, m, acts, w) = Setup(model, id);
        var s = Statistics.Compute(acts, w, OptionsFor(g));
        AssertMatchesGolden(g, m, s);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float64_compute_and_small_chunks_match_the_golden(string model, string id)
    {
        using var scope = NewDisposeScope();
        var (g, m, acts, w) = Setup(model, id);
        var s = Statistics.Compute(acts, w, OptionsFor(g) with { ComputeType = ScalarType.Float64, ChunkElements = 5000 });
        AssertMatchesGolden(g, m, s);
    }

    [Fact]
    public void Float16_weights_are_read_in_float32()
    {
        using var scope = NewDisposeScope();
        var g = GoldenCase.Load("tiny-llava-336", "photo");
        var m = TinyModel.Load("tiny-llava-336");
        Assert.True(m.IsFloat16);
        var w16 = m.Readout(asStored: true);
        Assert.Equal(ScalarType.Float16, w16.LmHead.dtype);
        var s = Statistics.Compute(g.Activations(m), w16, OptionsFor(g));
        AssertMatchesGolden(g, m, s);
    }

    internal static void AssertMatchesGolden(GoldenCase g, TinyModel m, ExampleStatistics s)
    {
        string c = $"{g.Model}/{g.Id}";
        // Target and top-5 (identical order where the probability gap exceeds 1e-4).
        Assert.Equal(g.TargetId, s.TargetId);
        var ids = g.JsonInts("top5_ids");
        var probs = g.JsonDoubles("top5_probs");
        Check.Close(probs, s.Top5Probs, $"{c} top5 probs");
        for (int r = 0; r < ids.Length; r++)
            if (ids[r] != s.Top5Ids[r])
            {
                int j = Array.IndexOf(ids, s.Top5Ids[r]);
                Assert.True(j >= 0 && Math.Abs(probs[j] - probs[r]) <= 1e-4, $"{c}: top5 rank {r} is {s.Top5Ids[r]}, golden {ids[r]}");
            }
        Assert.Equal(1.0 / Math.Sqrt(g.Json.GetProperty("final_var").GetDouble() + m.Eps), s.FrozenScale, 5);

        // Layers, heads, top heads, positions.
        Check.Close(g.JsonDoubles("layer_attn_increase"), s.LayerAttnIncrease, $"{c} layer_attn_increase");
        Check.Close(g.JsonDoubles("layer_ffn_increase"), s.LayerFfnIncrease, $"{c} layer_ffn_increase");
        Check.CloseT(g.T["head_increase"], Check.Flat(s.HeadIncrease), $"{c} head_increase");
        var top = g.TopHeads;
        Assert.Equal(top.Length, s.TopHeads.Length);
        for (int k = 0; k < top.Length; k++)
        {
            Assert.Equal((top[k].Layer, top[k].Head), (s.TopHeads[k].Layer, s.TopHeads[k].Head));
            Assert.True(Math.Abs(top[k].Score - s.TopHeads[k].Score) <= Check.Tol, $"{c} top head {k} score");
            var pos = s.PositionsOf(top[k].Layer, top[k].Head);
            Assert.NotNull(pos);
            Check.CloseT(g.T[$"position_increase_head_{top[k].Layer}_{top[k].Head}"], pos!, $"{c} position_increase_head_{top[k].Layer}_{top[k].Head}");
        }

        // Neurons: tiny models take the exact route, every neuron compared.
        Assert.NotNull(s.Neurons);
        Assert.Equal(NeuronRoute.Exact, s.Neurons!.Route);
        Assert.Null(s.Neurons.ExactIndices);
        Check.CloseT(g.T["neuron_increase"], Check.Flat(s.Neurons.Scores), $"{c} neuron_increase");

        // Image side.
        if (g.HasImage)
        {
            Assert.NotNull(s.Image);
            Assert.Equal(Check.I(g.T["image_positions"]).Select(v => (int)v), s.Image!.ImagePositions);
            Check.CloseT(g.T["attention_baseline_image"], s.Image.AttentionBaseline, $"{c} attention_baseline_image");
            var lens = s.Image.VisualTokenLens!;
            var golden = Check.I(g.T["logit_lens_image_top5"]);
            using var scope = NewDisposeScope();
            using var readout = FrozenScaleReadout.Create(m.Readout(), g.T["final_output_prenorm"][g.SeqLen - 1]);
            var logits = LogitLens.OwnNormLogits(g.T["image_features"], readout);
            int P = lens.TopIds.Length;
            for (int p = 0; p < P; p++)
                for (int r = 0; r < 5; r++)
                {
                    long want = golden[p * 5 + r], got = lens.TopIds[p][r];
                    if (want == got) continue;
                    // Only a near-tie may swap: the two logits agree within tolerance.
                    double a = logits[p, want].item<float>(), b = logits[p, got].item<float>();
                    Assert.True(Math.Abs(a - b) <= Check.Tol, $"{c} logit lens position {p} rank {r}: {got}, golden {want} (logits {b} vs {a})");
                }
        }
        else
        {
            Assert.Null(s.Image);
        }
    }
}
