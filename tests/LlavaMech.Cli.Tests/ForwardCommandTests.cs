using System.Text.Json;
using LlavaMech.Checkpoints;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Cli.Tests;

public class ForwardCommandTests
{
    private static JsonElement GoldenJson(string model, string caseId) =>
        JsonDocument.Parse(File.ReadAllText(Fixtures.File(model, $"golden_{caseId}.json"))).RootElement;

    private static long[] GoldenIds(string model, string caseId)
    {
        using var f = SafetensorsFile.Open(Fixtures.File(model, $"golden_{caseId}.safetensors"));
        using var t = f.Read("input_ids", ScalarType.Int64);
        return t.data<long>().ToArray();
    }

    [Theory]
    [InlineData("tiny-llava-mha", "circle")]
    [InlineData("tiny-llava-mha", "square_wide")]
    [InlineData("tiny-llava-336", "photo")]
    [InlineData("tiny-llava-mha", "llava_text_banana")]
    [InlineData("tiny-vicuna", "vicuna_sky")]
    [InlineData("tiny-llava-next-vicuna", "wide_circle")]
    [InlineData("tiny-llava-next-vicuna", "square_near")]
    [InlineData("tiny-llava-next-vicuna", "text_banana")]
    public void Forward_json_reports_the_reference_ids_target_and_top5(string model, string caseId)
    {
        var g = GoldenJson(model, caseId);
        var args = new List<string> { "forward", "--model", Fixtures.Model(model), "--prompt", g.GetProperty("prompt").GetString()!, "--json" };
        if (g.TryGetProperty("image", out var img) && img.ValueKind == JsonValueKind.String) args.AddRange(["--image", Fixtures.File(model, img.GetString()!)]);
        var r = CliRunner.Run([.. args]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.Equal(GoldenIds(model, caseId), j.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        Assert.Equal(g.TryGetProperty("num_image_tokens", out var n) ? n.GetInt32() : 0, j.GetProperty("num_image_tokens").GetInt32());
        Assert.Equal(g.GetProperty("target_id").GetInt32(), j.GetProperty("target_id").GetInt32());
        var top = j.GetProperty("top").EnumerateArray().ToArray();
        Assert.Equal(5, top.Length);
        var goldenIds = g.GetProperty("top5_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var goldenP = g.GetProperty("top5_probs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        for (int i = 0; i < 5; i++)
        {
            Assert.True(Math.Abs(top[i].GetProperty("prob").GetDouble() - goldenP[i]) < 1e-4 + 1e-3 * goldenP[i]);
            Assert.False(string.IsNullOrEmpty(top[i].GetProperty("token").GetString()));
        }
        Assert.Equal(goldenIds[0], top[0].GetProperty("id").GetInt32());
    }

    [Fact]
    public void Forward_without_json_prints_a_readable_table()
    {
        var r = CliRunner.Run("forward", "--model", Fixtures.Model("tiny-vicuna"), "--prompt", "The color of the sky is");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("target", r.Stdout);
        Assert.Contains("rank", r.Stdout);
        Assert.Equal(5, r.Stdout.Split('\n').Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s+\d\s+\d+\s")));
    }

    [Fact]
    public void Every_command_has_help()
    {
        var overview = CliRunner.Run("--help");
        Assert.Equal(0, overview.ExitCode);
        foreach (var c in new[] { "forward", "inspect", "bench" })
        {
            Assert.Contains(c, overview.Stdout);
            var r = CliRunner.Run(c, "--help");
            Assert.Equal(0, r.ExitCode);
            Assert.Contains($"usage: ./llavamech {c}", r.Stdout);
            Assert.Contains("examples:", r.Stdout);
        }
    }

    [Fact]
    public void Inspect_reports_the_published_7b_config_without_weights()
    {
        var r = CliRunner.Run("inspect", "--model", Fixtures.Model("llava-1.5-7b-hf"), "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.Equal(7_063_427_072, j.GetProperty("parameters").GetInt64());
        Assert.Equal(32, j.GetProperty("decoder_layers").GetInt32());
        Assert.Equal(128, j.GetProperty("head_dim").GetInt32());
        Assert.Equal(576, j.GetProperty("image_tokens").GetInt32());
        Assert.Equal(32064, j.GetProperty("vocab").GetInt32());
        Assert.Equal(14_126_854_144, j.GetProperty("bytes_float16").GetInt64());
        Assert.False(j.GetProperty("weights_checked").GetBoolean());
    }
}
