using System.Text.Json;
using System.Text.Json.Nodes;
using LlavaMech.Cli.Commands;
using LlavaMech.Reports;
using LlavaMech.Testing;

namespace LlavaMech.Cli.Tests;

/// <summary>
/// A checkpoint whose "▁triangle" embedding row is NaN (a real corrupt weight row, written into the safetensors bytes):
/// prompts about a triangle give a non-finite pass. Machine outputs stay valid, typed JSON; explain fails cleanly.
/// </summary>
public class NonFiniteOutputTests : IDisposable
{
    private const string TrianglePrompt = "USER: <image>\nWhat is the color of the triangle?\nASSISTANT: The color of the triangle is";
    private const string CirclePrompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-nonfinite-").FullName;
    private readonly string _model;

    public NonFiniteOutputTests()
    {
        _model = Path.Combine(_tmp, "nan-model");
        FaultyCheckpoint.WithNonFiniteEmbeddingRow(Fixtures.Model("tiny-llava-mha"), _model, "▁triangle", float.NaN);
    }

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private static string Image => Fixtures.File("tiny-llava-mha", "red_circle.png");

    [Fact]
    public void Forward_json_writes_null_for_non_finite_probabilities_and_numbers_otherwise()
    {
        var bad = CliRunner.Run("forward", "--model", _model, "--image", Image, "--prompt", TrianglePrompt, "--json");
        Assert.True(bad.ExitCode == 0, bad.Stderr);
        var j = JsonDocument.Parse(bad.Stdout).RootElement;   // valid JSON
        Assert.Equal(JsonValueKind.Number, j.GetProperty("target_id").ValueKind);
        var top = j.GetProperty("top").EnumerateArray().ToArray();
        Assert.Equal(5, top.Length);
        Assert.All(top, t => Assert.Equal(JsonValueKind.Null, t.GetProperty("prob").ValueKind));
        Assert.DoesNotContain("NaN", bad.Stdout);

        // The same corrupt model on a prompt without the token: finite, so numbers.
        var good = CliRunner.Run("forward", "--model", _model, "--image", Image, "--prompt", CirclePrompt, "--json");
        Assert.True(good.ExitCode == 0, good.Stderr);
        var probs = JsonDocument.Parse(good.Stdout).RootElement.GetProperty("top").EnumerateArray().Select(t => t.GetProperty("prob").GetDouble()).ToArray();
        Assert.All(probs, p => Assert.InRange(p, 0.0, 1.0));
        Assert.True(probs.Sum() is > 0 and <= 1.0 + 1e-9);
    }

    [Fact]
    public void The_json_policy_writes_every_non_finite_number_as_null_in_records_and_trees()
    {
        // Records: non-finite numbers as null, property names in snake_case (the policy declares every field name).
        Assert.Equal("""{"id":1,"token":"a","target_prob":null}""", Json.Serialize(new { Id = 1, Token = "a", TargetProb = double.NaN }));
        Assert.Equal("""{"a":[1.5,null,null],"b":{"c":null,"d":2},"e":null}""",
            Json.Serialize(new JsonObject
            {
                ["a"] = new JsonArray(1.5, double.PositiveInfinity, double.NegativeInfinity),
                ["b"] = new JsonObject { ["c"] = float.NaN, ["d"] = 2 },
                ["e"] = null,
            }));
    }

    [Fact]
    public void Explain_on_a_non_finite_pass_fails_naming_the_statistic_and_leaves_no_output_folder()
    {
        string outDir = Path.Combine(_tmp, "explain-out");
        var r = CliRunner.Run("explain", "--model", _model, "--image", Image, "--prompt", TrianglePrompt, "--out", outDir);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("non-finite statistic target_log_prob (NaN)", r.Stderr);
        Assert.False(Directory.Exists(outDir), "a failed explain left its --out folder");
        Assert.Equal(["nan-model"], Directory.GetFileSystemEntries(_tmp).Select(Path.GetFileName));   // no temporary sibling either

        // An existing output folder is left exactly as it was.
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "earlier.txt"), "earlier run");
        r = CliRunner.Run("explain", "--model", _model, "--image", Image, "--prompt", TrianglePrompt, "--out", outDir, "--json");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Equal(["earlier.txt"], Directory.GetFiles(outDir).Select(Path.GetFileName));
        Assert.Equal("earlier run", File.ReadAllText(Path.Combine(outDir, "earlier.txt")));
    }

    [Fact]
    public void Explain_puts_its_files_into_an_existing_output_folder_only_when_all_are_written()
    {
        string outDir = Path.Combine(_tmp, "explain-out");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "explain.json"), "{\"from\": \"an earlier run\"}");
        File.WriteAllText(Path.Combine(outDir, "notes.txt"), "the user's own file");
        var r = CliRunner.Run("explain", "--model", _model, "--image", Image, "--prompt", CirclePrompt, "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["explain.json", "explain.png", "heads.png", "layers.png", "notes.txt"], Directory.GetFiles(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var j = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "explain.json"))).RootElement;
        Assert.InRange(j.GetProperty("target_prob").GetDouble(), 0.0, 1.0);   // the new explain.json replaced the earlier one
        Assert.Equal("the user's own file", File.ReadAllText(Path.Combine(outDir, "notes.txt")));
        Assert.Equal(["explain-out", "nan-model"], Directory.GetFileSystemEntries(_tmp).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}
