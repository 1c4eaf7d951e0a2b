using System.Text.Json.Nodes;
using LlavaMech.Testing;

namespace LlavaMech.Cli.Tests;

/// <summary>
/// A config.json that disagrees with its weights is refused by every command that reads a model before anything is
/// sized from it: exit code 1 within seconds, a message naming the config key and the tensor, and memory no larger
/// than an ordinary start. Before, hidden_size 1e9 aborted natively (exit 134) and num_hidden_layers 1e6 grew past
/// 10 GB without end. The hostile folders are fixture copies with an edited config.json.
/// </summary>
public class HostileConfigTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-hostile-").FullName;
    private const string VisionPrompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";

    // An ordinary forward pass of the tiny model peaks near 300 MiB here; a model sized from a hostile config needs
    // gigabytes, so 1 GiB separates the two with room for a loaded machine.
    private const long MemoryBound = 1L << 30;
    private static readonly TimeSpan TimeBound = TimeSpan.FromSeconds(30);   // process start and JIT included; fails in well under 10 s

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private string Hostile(string fixture, Action<JsonObject> edit)
    {
        var dir = Path.Combine(_tmp, fixture + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Fixtures.Model(fixture)).Where(f => !Path.GetFileName(f).StartsWith("golden_")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var path = Path.Combine(dir, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(cfg);
        File.WriteAllText(path, cfg.ToJsonString());
        return dir;
    }

    private static void AssertRefused(CliRunner.Result r, params string[] named)
    {
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}\n{r.Stderr}");
        foreach (var n in named) Assert.Contains(n, r.Stderr);
        Assert.True(r.Elapsed < TimeBound, $"took {r.Elapsed}");
        Assert.True(r.PeakRssBytes < MemoryBound, $"peak RSS {r.PeakRssBytes / (1 << 20)} MiB");
    }

    private string Weights(string dir) => Path.Combine(dir, "model.safetensors");

    [Fact]
    public void Hidden_size_1e9_is_refused_by_forward_explain_inspect_and_bench()
    {
        var dir = Hostile("tiny-llava-mha", c => c["text_config"]!["hidden_size"] = 1_000_000_000);
        string[] named = ["text_config.hidden_size = 1000000000", $"tensor 'language_model.model.embed_tokens.weight' in file '{Weights(dir)}' has shape [602,64]"];
        AssertRefused(CliRunner.Run(TimeBound, "forward", "--model", dir, "--prompt", VisionPrompt, "--image", Fixtures.File("tiny-llava-mha", "red_circle.png")), named);
        AssertRefused(CliRunner.Run(TimeBound, "explain", "--model", dir, "--prompt", VisionPrompt, "--image", Fixtures.File("tiny-llava-mha", "red_circle.png"),
            "--out", Path.Combine(_tmp, "explain")), named);
        Assert.False(File.Exists(Path.Combine(_tmp, "explain", "explain.json")));
        AssertRefused(CliRunner.Run(TimeBound, "inspect", "--model", dir), named);
        AssertRefused(CliRunner.Run(TimeBound, "bench", "--model", dir, "--iterations", "1", "--examples", "0"), named);
    }

    [Fact]
    public void A_million_text_layers_are_refused()
    {
        var dir = Hostile("tiny-llava-mha", c => c["text_config"]!["num_hidden_layers"] = 1_000_000);
        AssertRefused(CliRunner.Run(TimeBound, "forward", "--model", dir, "--prompt", VisionPrompt, "--image", Fixtures.File("tiny-llava-mha", "red_circle.png")),
            "text_config.num_hidden_layers = 1000000", $"checkpoint '{Weights(dir)}' has 4 decoder layers", "tensor 'language_model.model.layers.3.");
        AssertRefused(CliRunner.Run(TimeBound, "inspect", "--model", dir), "text_config.num_hidden_layers = 1000000", "has 4 decoder layers");
    }

    [Fact]
    public void A_million_vision_layers_are_refused()
    {
        // vision_feature_layer -2 stays in range of the claimed tower, so only the weights can tell.
        var dir = Hostile("tiny-llava-mha", c => c["vision_config"]!["num_hidden_layers"] = 1_000_000);
        AssertRefused(CliRunner.Run(TimeBound, "forward", "--model", dir, "--prompt", VisionPrompt, "--image", Fixtures.File("tiny-llava-mha", "red_circle.png")),
            "vision_config.num_hidden_layers = 1000000", $"checkpoint '{Weights(dir)}' has 3 vision layers", "tensor 'vision_tower.encoder.layers.2.");
    }

    [Fact]
    public void A_config_without_text_config_blames_the_7b_default()
    {
        var dir = Hostile("tiny-llava-mha", c => c.Remove("text_config"));
        AssertRefused(CliRunner.Run(TimeBound, "forward", "--model", dir, "--prompt", VisionPrompt, "--image", Fixtures.File("tiny-llava-mha", "red_circle.png")),
            "text_config.hidden_size = 4096 (Hugging Face's default: config.json has no text_config)",
            $"tensor 'language_model.model.embed_tokens.weight' in file '{Weights(dir)}' has shape [602,64]");
    }

    [Theory]
    [InlineData("hidden_size", "-64", "hidden_size must be positive, found -64")]
    [InlineData("num_hidden_layers", "4294967296", "num_hidden_layers must be an integer, found 4294967296")]
    [InlineData("vocab_size", "2147483647", "vocab_size = 2147483647, but tensor 'model.embed_tokens.weight'")]
    [InlineData("num_attention_heads", "2147483647", "num_attention_heads 2147483647 is not divisible by num_key_value_heads 4")]
    public void Negative_and_overflowing_values_are_refused_naming_the_key(string key, string value, string message)
    {
        var dir = Hostile("tiny-vicuna", c => c[key] = JsonNode.Parse(value));
        AssertRefused(CliRunner.Run(TimeBound, "forward", "--model", dir, "--prompt", "The color of the sky is"),
            Path.Combine(dir, "config.json"), message);
    }

    [Fact]
    public void Integer_weights_and_bytes_outside_every_tensor_are_refused()
    {
        // I32 has the size of F32, so the header stays consistent; only the dtype says these bytes are not weights.
        var dir = Hostile("tiny-vicuna", _ => { });
        string weights = Weights(dir);
        var bytes = File.ReadAllBytes(weights);
        int headerEnd = 8 + (int)BitConverter.ToInt64(bytes, 0);
        var header = System.Text.Encoding.UTF8.GetString(bytes, 8, headerEnd - 8);
        int at = header.IndexOf("\"F32\"", header.IndexOf("\"model.norm.weight\"", StringComparison.Ordinal), StringComparison.Ordinal);
        System.Text.Encoding.UTF8.GetBytes("\"I32\"").CopyTo(bytes, 8 + at);
        File.WriteAllBytes(weights, bytes);
        AssertRefused(CliRunner.Run(TimeBound, "forward", "--model", dir, "--prompt", "The color of the sky is"),
            $"tensor 'model.norm.weight' in file '{weights}' is stored as I32, but model weights must be floating point (F32, F16 or BF16)");

        File.Copy(Fixtures.File("tiny-vicuna", "model.safetensors"), weights, overwrite: true);
        using (var fs = new FileStream(weights, FileMode.Append)) fs.Write(new byte[64]);
        AssertRefused(CliRunner.Run(TimeBound, "forward", "--model", dir, "--prompt", "The color of the sky is"),
            $"safetensors file '{weights}': 64 trailing bytes after the last tensor");
    }
}
