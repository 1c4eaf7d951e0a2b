using System.Text.Json;
using LlavaMech.Testing;
using SkiaSharp;

namespace LlavaMech.Cli.Tests;

/// <summary><c>intervene</c> as a user runs it: the JSON of a golden case, --out with --patch-layer all, a usage error.</summary>
public class InterveneCommandTests : IDisposable
{
    private const string Model = "tiny-llava-mha";
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-intervene-").FullName;
    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private static JsonElement Case(string name) =>
        JsonDocument.Parse(File.ReadAllText(Fixtures.File(Model, "golden_interventions.json"))).RootElement
            .EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    private static List<string> Command(JsonElement c) =>
    [
        "intervene", "--model", Fixtures.Model(Model), "--image", Fixtures.File(Model, c.GetProperty("image").GetString()!),
        "--prompt", c.GetProperty("prompt").GetString()!,
    ];

    [Fact]
    public void Intervene_json_reports_the_reference_knockout()
    {
        var c = Case("circle/knockout_last_image_window");
        var r = CliRunner.Run([.. Command(c), .. c.GetProperty("args").EnumerateArray().Select(a => a.GetString()!), "--json"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.Equal(c.GetProperty("target_id").GetInt32(), j.GetProperty("target_id").GetInt32());
        Assert.False(string.IsNullOrEmpty(j.GetProperty("target_token").GetString()));
        foreach (var field in new[] { "clean_logprob", "edit_logprob", "delta" })
            Assert.True(Math.Abs(c.GetProperty(field).GetDouble() - j.GetProperty(field).GetDouble()) < 1e-3, $"{field}: {j.GetProperty(field)} vs {c.GetProperty(field)}");
        Assert.Equal(c.GetProperty("edit_argmax").GetInt32(), j.GetProperty("edit_argmax").GetInt32());
        Assert.Equal(c.GetProperty("flipped").GetBoolean(), j.GetProperty("flipped").GetBoolean());
        Assert.Equal(5, j.GetProperty("clean_top5").GetArrayLength());
        Assert.Equal(5, j.GetProperty("edit_top5").GetArrayLength());
        Assert.True(j.GetProperty("edit_top5")[0].GetProperty("prob").GetDouble() > 0);
        var edit = j.GetProperty("edits").EnumerateArray().Single();
        Assert.Equal("knockout", edit.GetProperty("kind").GetString());
        Assert.Equal([0, 1], edit.GetProperty("layers").EnumerateArray().Select(e => e.GetInt32()));
        Assert.False(j.TryGetProperty("curve", out _));
    }

    [Fact]
    public void Intervene_out_with_every_patched_layer_writes_the_json_and_the_curve_figure()
    {
        var c = Case("circle/patch_image_mid");
        var outDir = Path.Combine(_tmp, "patch");
        var r = CliRunner.Run([.. Command(c), "--patch-image", Fixtures.File(Model, "wide_scene.png"), "--patch-layer", "all",
            "--patch-positions", "image", "--out", outDir]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("flipped", r.Stdout);
        Assert.Contains("wrote", r.Stdout);
        var j = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "intervene.json"))).RootElement;
        var curve = j.GetProperty("curve").EnumerateArray().ToArray();
        Assert.Equal([0, 1, 2, 3], curve.Select(p => p.GetProperty("layer").GetInt32()));      // the fixture has 4 layers
        Assert.True(Math.Abs(curve[1].GetProperty("edit_logprob").GetDouble() - c.GetProperty("edit_logprob").GetDouble()) < 1e-3);
        Assert.True(j.GetProperty("patched_layer").GetInt32() is >= 0 and < 4);
        using var png = SKBitmap.Decode(Path.Combine(outDir, "intervene.png"));
        Assert.NotNull(png);
        Assert.True(png.Width > 100 && png.Height > 100);
    }

    [Fact]
    public void A_head_out_of_range_is_a_usage_error_naming_the_models_heads()
    {
        var c = Case("circle/head_zero_single");
        var r = CliRunner.Run([.. Command(c), "--ablate-heads", "1.7"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("head 7 is out of range; the model has 4 heads per layer", r.Stderr);
        Assert.Contains("See ./llavamech intervene --help", r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void Intervene_help_teaches_the_edits()
    {
        var r = CliRunner.Run("intervene", "--help");
        Assert.Equal(0, r.ExitCode);
        foreach (var s in new[] { "usage: ./llavamech intervene", "--ablate-heads", "--knockout", "--patch-layer", "examples:", "Order within a layer" })
            Assert.Contains(s, r.Stdout);
    }
}
