using LlavaMech.Datasets.Manifest;
using LlavaMech.Runtime.Stats;
using System.Text.Json.Nodes;
using LlavaMech.Model.Tests;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Tests;

/// <summary>
/// The pipeline's rows of a fixture example against the reference statistics in the fixture's golden files
/// (docs/METHOD.md, "The statistics" and "Golden files"), within 1e-4: what a worker writes to the tables is what the
/// reference computes.
/// </summary>
public class PipelineAnalyzerTests
{
    private const double Tol = 1e-4;

    public static IEnumerable<object[]> Cases() =>
    [
        ["tiny-llava-mha", "circle"], ["tiny-llava-mha", "square_wide"], ["tiny-llava-mha", "llava_text_banana"],
        ["tiny-llava-mha", "llava_text_sky"], ["tiny-vicuna", "vicuna_banana"], ["tiny-vicuna", "vicuna_sky"],
    ];

    internal static ManifestExample Work(Golden g, string? expected = null) => new(
        g.Case, g.ImagePath is null ? "tqa" : "vqa", g.ImagePath, g.ImagePath is null ? null : Path.GetFileName(g.ImagePath), g.Prompt,
        expected, null, "{\"source\":\"golden\"}", 1);

    [Theory]
    [MemberData(nameof(Cases))]
    public void One_examples_rows_equal_the_golden_statistics(string model, string caseId)
    {
        using var g = new Golden(model, caseId);
        using var analyzer = new PipelineAnalyzer(ModelCache.Get(model));
        var outcome = analyzer.Run(Work(g), new AnalysisSettings());
        Assert.False(outcome.Rejected, outcome.RejectReason);
        AssertRowsEqualGolden(g, outcome.Rows!, topNeurons: 20);
        Assert.Equal(1, analyzer.ForwardPasses);
    }

    [Fact]
    public void A_batch_of_the_four_llava_cases_shares_passes_and_every_row_equals_its_golden()
    {
        string[] ids = ["circle", "llava_text_sky", "square_wide", "llava_text_banana"];
        var goldens = ids.Select(c => new Golden("tiny-llava-mha", c)).ToList();
        try
        {
            using var analyzer = new PipelineAnalyzer(ModelCache.Get("tiny-llava-mha"));
            var outcomes = analyzer.RunBatch(goldens.Select(g => Work(g)).ToList(), new AnalysisSettings { BatchSize = 8, TopNeurons = 5 });
            // circle and square_wide: 61 positions, an 84 x 84 crop -> one pass; the two text prompts differ in length.
            Assert.Equal(3, analyzer.ForwardPasses);
            Assert.Equal(0, analyzer.BatchFallbacks);
            for (int i = 0; i < ids.Length; i++)
            {
                Assert.Equal(ids[i], outcomes[i].Work.Id);
                AssertRowsEqualGolden(goldens[i], outcomes[i].Rows!, topNeurons: 5);
            }
        }
        finally
        {
            foreach (var g in goldens) g.Dispose();
        }
    }

    [Fact]
    public void With_strategy_full_the_patch_rows_and_columns_skip_the_class_token()
    {
        // 37 image tokens (the class token, then 6 x 6): a count-based grid left every patch_row/col null here.
        var dir = Directory.CreateTempSubdirectory("llavamech-full-").FullName;
        try
        {
            foreach (var f in Directory.GetFiles(Testing.Fixtures.Model("tiny-llava-mha")))
                if (!Path.GetFileName(f).StartsWith("golden_")) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
            cfg["vision_feature_select_strategy"] = "full";
            cfg["image_seq_length"] = 37;
            File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
            using var g = new Golden("tiny-llava-mha", "circle");
            using var model = Model.LoadedModel.Load(dir);
            using var analyzer = new PipelineAnalyzer(model);
            var outcome = analyzer.Run(Work(g), new AnalysisSettings { TopNeurons = 0 });
            Assert.False(outcome.Rejected, outcome.RejectReason);
            int first = g["image_positions"].data<long>().Select(p => (int)p).First();
            var head = outcome.Rows!.Of<PositionStatRow>().GroupBy(p => (p.Layer, p.Head)).First().ToDictionary(p => p.Position);
            Assert.Equal(37, head.Values.Count(p => p.IsImage));
            Assert.True(head[first].IsImage);
            Assert.Equal((null, null), (head[first].PatchRow, head[first].PatchCol));   // the class token is no patch
            for (int k = 0; k < 36; k++)
                Assert.Equal(((int?)(k / 6), (int?)(k % 6)), (head[first + 1 + k].PatchRow, head[first + 1 + k].PatchCol));
            Assert.False(head[first + 37].IsImage);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void An_expected_answer_is_the_target_and_its_probability_is_the_reference_softmax()
    {
        using var g = new Golden("tiny-llava-mha", "circle");
        using var analyzer = new PipelineAnalyzer(ModelCache.Get("tiny-llava-mha"));
        var settings = new AnalysisSettings { Target = TargetMode.Expected, TopNeurons = 0 };
        var rows = analyzer.Run(Work(g, expected: "circle"), settings).Rows!;
        Assert.Equal(331, rows.Example.TargetId);   // "▁circle"
        using var scope = NewDisposeScope();
        double p = g["logits_last"].to(ScalarType.Float64).softmax(0)[331].item<double>();
        Assert.Equal(p, rows.Example.TargetProb, 1e-6);
        Assert.False(rows.Example.Correct);          // the model's argmax is 478
        Assert.Empty(rows.Of<NeuronStatRow>());                  // top neurons 0 skips the neuron statistics

        // Argmax mode ignores the expected answer for the target but still scores correctness.
        var argmax = analyzer.Run(Work(g, expected: "circle"), new AnalysisSettings { TopNeurons = 0 }).Rows!;
        Assert.Equal(g.TargetId, argmax.Example.TargetId);
        Assert.False(argmax.Example.Correct);
    }

    [Fact]
    public void Inputs_the_model_cannot_take_are_rejects_with_the_reason()
    {
        using var g = new Golden("tiny-llava-mha", "circle");
        using var vicuna = new PipelineAnalyzer(ModelCache.Get("tiny-vicuna"));
        var textOnly = vicuna.Run(Work(g), new AnalysisSettings());
        Assert.True(textOnly.Rejected);
        Assert.Contains("is text-only (Llama); it cannot take the image of a vqa example", textOnly.RejectReason);

        using var llava = new PipelineAnalyzer(ModelCache.Get("tiny-llava-mha"));
        var twoTokens = llava.Run(Work(g, expected: "sky banana"), new AnalysisSettings { Target = TargetMode.Expected });
        Assert.True(twoTokens.Rejected);
        Assert.Contains("expected answer 'sky banana' is not a single token", twoTokens.RejectReason);
        Assert.Equal(0, llava.ForwardPasses);
        Assert.Equal(0, vicuna.ForwardPasses);
    }

    /// <summary>Every table row of one example against the reference: examples, layer_stats, head_stats, position_stats, neuron_stats, logit_lens.</summary>
    internal static void AssertRowsEqualGolden(Golden g, ExampleRows rows, int topNeurons)
    {
        using var scope = NewDisposeScope();
        var json = g.Json;
        bool image = g.ImagePath is not null;
        int T = g.SeqLenPlus(0);
        var imagePositions = image ? g["image_positions"].data<long>().Select(p => (int)p).ToArray() : [];

        // examples
        var ex = rows.Example;
        Assert.Equal(g.Case, ex.ExampleId);
        Assert.Equal(g.TargetId, ex.TargetId);
        Assert.Equal(g.Top5Probs[0], ex.TargetProb, 1e-5);   // the JSON keeps 6 decimals
        Assert.Equal(T, ex.SeqLen);
        Assert.Equal(json.GetProperty("num_image_tokens").GetInt32(), ex.NumImageTokens);
        Assert.Null(ex.Correct);
        var meta = JsonNode.Parse(ex.Metadata)!.AsObject();
        Assert.Equal("golden", (string?)meta["source"]);
        Assert.Equal(g.Top5, meta["llavamech"]!["top5"]!.AsArray().Select(t => (int)t!["id"]!));

        // layer_stats
        var attn = json.GetProperty("layer_attn_increase").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var ffn = json.GetProperty("layer_ffn_increase").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        int L = attn.Length;
        Assert.Equal(2 * L, rows.Of<LayerStatRow>().Count);
        for (int l = 0; l < L; l++)
        {
            Assert.Equal(attn[l], rows.Of<LayerStatRow>().Single(r => r.Layer == l && r.Component == Components.Attention).LogProbIncrease, Tol);
            Assert.Equal(ffn[l], rows.Of<LayerStatRow>().Single(r => r.Layer == l && r.Component == Components.Ffn).LogProbIncrease, Tol);
        }

        // head_stats: log-prob increase, and the last row's attention mass on the image positions
        var heads = g["head_increase"].to(ScalarType.Float64);                       // [L, H]
        var patterns = g["attn_weights"].to(ScalarType.Float64).select(2, T - 1);  // [L, H, T]
        int H = (int)heads.shape[1];
        Assert.Equal(L * H, rows.Of<HeadStatRow>().Count);
        var share = image ? patterns.index_select(2, tensor(imagePositions.Select(p => (long)p).ToArray())).sum(2) : null;
        foreach (var h in rows.Of<HeadStatRow>())
        {
            Assert.Equal(heads[h.Layer][h.Head].item<double>(), h.LogProbIncrease, Tol);
            if (image) Assert.Equal(share![h.Layer][h.Head].item<double>(), h.AttnToImage!.Value, Tol);
            else Assert.Null(h.AttnToImage);
        }

        // position_stats: the golden top-3 heads, every position, scores and attention weights
        var topHeads = json.GetProperty("top_heads").EnumerateArray().Select(e => (e[0].GetInt32(), e[1].GetInt32())).ToArray();
        Assert.Equal(topHeads, rows.Of<PositionStatRow>().Select(p => (p.Layer, p.Head)).Distinct());
        foreach (var grp in rows.Of<PositionStatRow>().GroupBy(p => (p.Layer, p.Head)))
        {
            var scores = g[$"position_increase_head_{grp.Key.Layer}_{grp.Key.Head}"].to(ScalarType.Float64).data<double>().ToArray();
            var weights = patterns[grp.Key.Layer][grp.Key.Head].data<double>().ToArray();
            Assert.Equal(Enumerable.Range(0, T), grp.Select(p => p.Position));
            foreach (var p in grp)
            {
                Assert.Equal(scores[p.Position], p.LogProbIncrease, Tol);
                Assert.Equal(weights[p.Position], p.AttnWeight, Tol);
                int k = Array.IndexOf(imagePositions, p.Position);
                Assert.Equal(k >= 0, p.IsImage);
                Assert.Equal(k >= 0 ? k / 6 : null, p.PatchRow);   // the 6 x 6 patch grid of the 84 px fixture
                Assert.Equal(k >= 0 ? k % 6 : null, p.PatchCol);
            }
        }

        // neuron_stats: the top-N neurons of the reference's [L, I] scores, best first
        var neurons = g["neuron_increase"].to(ScalarType.Float64);
        var ranked = neurons.flatten().sort(descending: true).Values.data<double>().ToArray();
        Assert.Equal(topNeurons, rows.Of<NeuronStatRow>().Count);
        foreach (var n in rows.Of<NeuronStatRow>()) Assert.Equal(neurons[n.Layer][n.Neuron].item<double>(), n.LogProbIncrease, Tol);
        for (int i = 0; i < topNeurons; i++) Assert.Equal(ranked[i], rows.Of<NeuronStatRow>()[i].LogProbIncrease, Tol);
        Assert.Equal(topNeurons, rows.Of<NeuronStatRow>().Select(n => (n.Layer, n.Neuron)).Distinct().Count());

        // logit_lens: the visual tokens' top-5 at the image positions
        if (image)
        {
            var lens = g["logit_lens_image_top5"].data<long>().ToArray();   // [P, 5]
            Assert.Equal(lens.Length, rows.Of<LogitLensRow>().Count);
            foreach (var r in rows.Of<LogitLensRow>())
            {
                int k = Array.IndexOf(imagePositions, r.Position);
                Assert.True(k >= 0, $"lens row at non-image position {r.Position}");
                Assert.Equal(lens[k * 5 + r.Rank], r.TokenId);
            }
        }
        else Assert.Empty(rows.Of<LogitLensRow>());
    }
}
