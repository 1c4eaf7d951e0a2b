using System.Text.Json;
using LlavaMech.Analysis;
using LlavaMech.Checkpoints;
using LlavaMech.Model;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Explanation.Tests;

/// <summary>
/// The whole path a user runs (tokenizer, image processor, hooked pass, statistics) against the
/// reference statistics of every golden case, within the 1e-3 of docs/METHOD.md ("Golden files").
/// </summary>
public class EndToEndStatisticsTests
{
    private static readonly Dictionary<string, LoadedModel> Models = new();

    internal static LoadedModel Model(string name)
    {
        lock (Models)
            return Models.TryGetValue(name, out var m) ? m : Models[name] = LoadedModel.Load(Fixtures.Model(name));
    }

    public static IEnumerable<object[]> Cases() =>
    [
        ["tiny-llava-mha", "circle"], ["tiny-llava-mha", "square_wide"], ["tiny-llava-336", "photo"],
        ["tiny-llava-mha", "llava_text_banana"], ["tiny-llava-mha", "llava_text_sky"],
        ["tiny-vicuna", "vicuna_banana"], ["tiny-vicuna", "vicuna_sky"],
        ["tiny-llava-next-vicuna", "wide_circle"], ["tiny-llava-next-vicuna", "tall_triangle"], ["tiny-llava-next-vicuna", "square_near"],
        ["tiny-llava-next-vicuna", "text_banana"],
    ];

    private static void Near(double expected, double actual, string what) =>
        Assert.True(Math.Abs(expected - actual) <= 1e-3, $"{what}: {actual:G6} vs golden {expected:G6}");

    [Theory]
    [MemberData(nameof(Cases))]
    public void Hooked_pass_statistics_match_the_reference(string model, string caseId)
    {
        var json = JsonDocument.Parse(File.ReadAllText(Fixtures.File(model, $"golden_{caseId}.json"))).RootElement;
        using var golden = SafetensorsFile.Open(Fixtures.File(model, $"golden_{caseId}.safetensors"));
        Tensor G(string name) => golden.Read(name, ScalarType.Float64);
        var m = Model(model);
        using var analyzer = new ExampleAnalyzer(m);
        using var scope = NewDisposeScope();
        string? image = json.TryGetProperty("image", out var i) && i.ValueKind == JsonValueKind.String ? Fixtures.File(model, i.GetString()!) : null;
        var a = analyzer.Analyze(m.Prepare(json.GetProperty("prompt").GetString()!, image));
        var s = a.Statistics;

        Assert.Equal(json.GetProperty("target_id").GetInt32(), s.TargetId);
        var attn = json.GetProperty("layer_attn_increase").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var ffn = json.GetProperty("layer_ffn_increase").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        for (int l = 0; l < attn.Length; l++)
        {
            Near(attn[l], s.LayerAttnIncrease[l], $"layer {l} attention increase");
            Near(ffn[l], s.LayerFfnIncrease[l], $"layer {l} FFN increase");
        }
        var heads = G("head_increase");
        for (int l = 0; l < heads.shape[0]; l++)
            for (int h = 0; h < heads.shape[1]; h++)
                Near(heads[l, h].item<double>(), s.HeadIncrease[l][h], $"head {l}.{h} increase");
        var top = json.GetProperty("top_heads").EnumerateArray().ToArray();
        for (int k = 0; k < top.Length; k++)
        {
            int l = top[k][0].GetInt32(), h = top[k][1].GetInt32();
            Assert.Equal((l, h), (s.TopHeads[k].Layer, s.TopHeads[k].Head));
            var expected = G($"position_increase_head_{l}_{h}").data<double>().ToArray();
            var actual = s.PositionsOf(l, h)!;
            for (int p = 0; p < expected.Length; p++) Near(expected[p], actual[p], $"head {l}.{h} position {p}");
        }
        var neurons = G("neuron_increase");
        Assert.NotNull(s.Neurons);
        for (int l = 0; l < neurons.shape[0]; l++)
        {
            var row = neurons[l].data<double>().ToArray();
            for (int n = 0; n < row.Length; n++) Near(row[n], s.Neurons!.Scores[l][n], $"layer {l} neuron {n}");
        }
        if (image is not null)
        {
            var baseline = G("attention_baseline_image").data<double>().ToArray();
            for (int p = 0; p < baseline.Length; p++) Near(baseline[p], s.Image!.AttentionBaseline[p], $"attention baseline at image position {p}");
            using var lens = golden.Read("logit_lens_image_top5", ScalarType.Int64);
            var ids = lens.data<long>().ToArray();
            for (int p = 0; p < lens.shape[0]; p++)
                Assert.Equal(ids.Skip(p * 5).Take(5).Select(x => (int)x).ToArray(), s.Image!.VisualTokenLens!.TopIds[p]);
        }
    }

    [Fact]
    public void A_named_target_changes_what_is_explained()
    {
        var m = Model("tiny-llava-mha");
        using var analyzer = new ExampleAnalyzer(m);
        using var scope = NewDisposeScope();
        var input = m.Prepare("USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is", Fixtures.File("tiny-llava-mha", "red_circle.png"));
        var argmax = analyzer.Analyze(input).Statistics;
        int red = m.Tokenizer.TokenToId("\u2581red")!.Value;
        var named = analyzer.Analyze(input, new StatisticsOptions { TargetId = red }).Statistics;
        Assert.Equal(red, named.TargetId);
        Assert.NotEqual(argmax.TargetId, named.TargetId);
        // Layer increases telescope: their sum is logp(h_L) - logp(x_0) under the frozen scale, different per target.
        Assert.NotEqual(argmax.LayerAttnIncrease.Sum() + argmax.LayerFfnIncrease.Sum(), named.LayerAttnIncrease.Sum() + named.LayerFfnIncrease.Sum());
    }
}
