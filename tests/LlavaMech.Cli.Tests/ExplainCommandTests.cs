using System.Text.Json;
using DuckDB.NET.Data;
using LlavaMech.Checkpoints;
using LlavaMech.Testing;
using SkiaSharp;
using static TorchSharp.torch;

namespace LlavaMech.Cli.Tests;

public class ExplainCommandTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-explain-").FullName;
    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [Theory]
    [InlineData("tiny-llava-mha", "circle")]
    [InlineData("tiny-llava-336", "photo")]
    [InlineData("tiny-llava-next-vicuna", "wide_circle")]
    [InlineData("tiny-llava-next-vicuna", "tall_triangle")]
    public void Explain_json_carries_the_reference_statistics(string model, string caseId)
    {
        var g = JsonDocument.Parse(File.ReadAllText(Fixtures.File(model, $"golden_{caseId}.json"))).RootElement;
        using var golden = SafetensorsFile.Open(Fixtures.File(model, $"golden_{caseId}.safetensors"));
        var outDir = Path.Combine(_tmp, caseId);
        var r = CliRunner.Run("explain", "--model", Fixtures.Model(model), "--image", Fixtures.File(model, g.GetProperty("image").GetString()!),
            "--prompt", g.GetProperty("prompt").GetString()!, "--out", outDir, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        // LLaVA-NeXT also draws the high-resolution tiles' map over the picture (padding removed); LLaVA-1.5 has none.
        Assert.Equal(model.Contains("next"), File.Exists(Path.Combine(outDir, "explain_highres.png")));
        var j = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.Equal(g.GetProperty("target_id").GetInt32(), j.GetProperty("target_id").GetInt32());
        Assert.False(string.IsNullOrEmpty(j.GetProperty("target_token").GetString()));
        static double[] D(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();
        void Near(double[] expected, double[] actual, string what)
        {
            Assert.Equal(expected.Length, actual.Length);
            for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-3, $"{what}[{i}]: {actual[i]} vs {expected[i]}");
        }
        Near(D(g.GetProperty("layer_attn_increase")), D(j.GetProperty("layer_attn_increase")), "layer_attn_increase");
        Near(D(g.GetProperty("layer_ffn_increase")), D(j.GetProperty("layer_ffn_increase")), "layer_ffn_increase");
        using var heads = golden.Read("head_increase", ScalarType.Float64);
        var headRows = j.GetProperty("head_increase").EnumerateArray().Select(D).ToArray();
        for (int l = 0; l < headRows.Length; l++) Near(heads[l].data<double>().ToArray(), headRows[l], $"head_increase[{l}]");
        var top = j.GetProperty("top_heads").EnumerateArray().ToArray();
        var goldenTop = g.GetProperty("top_heads").EnumerateArray().ToArray();
        for (int k = 0; k < goldenTop.Length; k++)
        {
            int l = goldenTop[k][0].GetInt32(), h = goldenTop[k][1].GetInt32();
            Assert.Equal(l, top[k][0].GetInt32());
            Assert.Equal(h, top[k][1].GetInt32());
            using var pos = golden.Read($"position_increase_head_{l}_{h}", ScalarType.Float64);
            Near(pos.data<double>().ToArray(), D(j.GetProperty("position_increase").GetProperty($"{l}_{h}")), $"position_increase {l}_{h}");
        }
        using var positions = golden.Read("image_positions", ScalarType.Int64);
        Assert.Equal(positions.data<long>().Select(p => (int)p).ToArray(), j.GetProperty("image_positions").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        using var baseline = golden.Read("attention_baseline_image", ScalarType.Float64);
        Near(baseline.data<double>().ToArray(), D(j.GetProperty("attention_baseline_image")), "attention_baseline_image");
        using var lens = golden.Read("logit_lens_image_top5", ScalarType.Int64);
        var lensRows = j.GetProperty("logit_lens_image_top5").EnumerateArray().Select(r => r.EnumerateArray().Select(e => (long)e.GetInt32()).ToArray()).ToArray();
        Assert.Equal(lens.data<long>().ToArray(), lensRows.SelectMany(x => x).ToArray());
        // The 20 best neurons are the 20 largest exact golden scores, in order.
        using var neurons = golden.Read("neuron_increase", ScalarType.Float64);
        long width = neurons.shape[1];
        var flat = neurons.flatten().data<double>().ToArray();
        var best = flat.Select((v, i) => (v, i)).OrderByDescending(x => x.v).Take(20).ToArray();
        var topNeurons = j.GetProperty("top_neurons").EnumerateArray().ToArray();
        Assert.Equal(20, topNeurons.Length);
        for (int k = 0; k < 20; k++)
        {
            Assert.True(Math.Abs(best[k].v - topNeurons[k][2].GetDouble()) <= 1e-3, $"neuron rank {k}");
        }
        Assert.Equal((int)(best[0].i / width), topNeurons[0][0].GetInt32());
        Assert.Equal((int)(best[0].i % width), topNeurons[0][1].GetInt32());

        // The figures exist and are real images of the expected layout.
        foreach (var f in new[] { "explain.png", "layers.png", "heads.png", "explain.json" }) Assert.True(File.Exists(Path.Combine(outDir, f)), f);
        using var fig = SKBitmap.Decode(Path.Combine(outDir, "explain.png"));
        Assert.True(fig.Width > 2.5 * fig.Height, $"three panels side by side: {fig.Width}x{fig.Height}");
        var file = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "explain.json"))).RootElement;
        Assert.Equal(j.GetProperty("target_id").GetInt32(), file.GetProperty("target_id").GetInt32());
        Assert.Equal(D(j.GetProperty("layer_ffn_increase")), D(file.GetProperty("layer_ffn_increase")));
    }

    [Fact]
    public void Explain_with_a_named_target_and_a_readable_summary()
    {
        var outDir = Path.Combine(_tmp, "red");
        var r = CliRunner.Run("explain", "--model", Fixtures.Model("tiny-llava-mha"), "--image", Fixtures.File("tiny-llava-mha", "red_circle.png"),
            "--prompt", "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is", "--target", "red", "--heads", "5", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("target        'red'", r.Stdout.Replace(" red", "red"));
        Assert.Contains("top heads", r.Stdout);
        Assert.Contains("where on the image", r.Stdout);
        var j = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "explain.json"))).RootElement;
        Assert.Equal(5, j.GetProperty("top_heads").GetArrayLength());
        Assert.Equal(5, j.GetProperty("position_increase").EnumerateObject().Count());
    }

    [Fact]
    public void Compare_methods_tables_read_back_with_duckdb()
    {
        var outDir = Path.Combine(_tmp, "methods");
        var r = CliRunner.Run("compare-methods", "--model", Fixtures.Model("tiny-llava-mha"), "--dataset", Path.Combine(Fixtures.RepoRoot, "datasets/shapes-colors-mini/manifest.jsonl"),
            "--limit", "3", "--ig-steps", "4", "--curve-steps", "6", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var db = new DuckDBConnection("Data Source=:memory:");
        db.Open();
        long Scalar(string sql) { using var cmd = db.CreateCommand(); cmd.CommandText = sql; return Convert.ToInt64(cmd.ExecuteScalar()); }
        string P(string f) => Path.Combine(outDir, f).Replace("'", "''");
        Assert.Equal(3 * 6, Scalar($"select count(*) from read_parquet('{P("methods.parquet")}')"));
        Assert.Equal(6, Scalar($"select count(distinct method) from read_parquet('{P("methods.parquet")}')"));
        Assert.Equal(3 * 6 * 2 * 7, Scalar($"select count(*) from read_parquet('{P("curves.parquet")}')"));
        Assert.Equal(3 * 6 * 36, Scalar($"select count(*) from read_parquet('{P("scores.parquet")}')"));
        // Every deletion curve starts at the unmodified probability of its example.
        Assert.Equal(0, Scalar($"""
            select count(*) from read_parquet('{P("curves.parquet")}') c join read_parquet('{P("methods.parquet")}') m using (example_id, method)
            where c.curve = 'deletion' and c.step = 0 and abs(c.prob - m.target_prob) > 1e-6
            """));
        Assert.Equal(3 * 6, Scalar($"select count(*) from read_parquet('{P("methods.parquet")}') where pointing_hit is not null and mass_in_box between 0 and 1"));
        Assert.Contains("| occlusion", File.ReadAllText(Path.Combine(outDir, "summary.md")));
    }
}
