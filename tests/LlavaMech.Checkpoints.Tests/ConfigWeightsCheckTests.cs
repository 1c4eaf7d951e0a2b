using System.Diagnostics;
using System.Text.Json.Nodes;
using LlavaMech.Testing;

namespace LlavaMech.Checkpoints.Tests;

/// <summary>
/// config.json is checked against the safetensors headers before anything is sized from it: every hostile value is
/// refused at once, naming the key and the tensor that disagrees. Fixture copies are edited in a temp folder.
/// </summary>
public class ConfigWeightsCheckTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    /// <summary>A copy of a fixture's config.json and model.safetensors, the config edited.</summary>
    private string Copy(string fixture, Action<JsonObject>? editConfig = null)
    {
        var dir = _tmp.Sub(fixture + "-" + Guid.NewGuid().ToString("N")[..6]);
        File.Copy(Fixtures.File(fixture, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        var cfg = JsonNode.Parse(File.ReadAllText(Fixtures.File(fixture, "config.json")))!.AsObject();
        editConfig?.Invoke(cfg);
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        return dir;
    }

    private static CheckpointException Fails(string dir, out TimeSpan took)
    {
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<CheckpointException>(() =>
        {
            var config = ModelConfig.Load(dir);
            using var ckpt = Checkpoint.Open(dir);
            ConfigWeightsCheck.Validate(config, ckpt);
        });
        took = sw.Elapsed;
        return e;
    }

    [Theory]
    [InlineData("tiny-llava-mha")]
    [InlineData("tiny-llava-336")]
    [InlineData("tiny-vicuna")]
    public void Fixtures_pass_and_bind_every_tensor(string fixture)
    {
        var config = ModelConfig.Load(Fixtures.Model(fixture));
        using var ckpt = Checkpoint.Open(Fixtures.Model(fixture));
        Assert.Equal(ckpt.Tensors.Count, ConfigWeightsCheck.Validate(config, ckpt).Count);
    }

    public static TheoryData<string, string, string, string> HostileConfigs => new()
    {
        // fixture, JSON path to set ("text_config.hidden_size"), value, expected message (after "config '<path>': ")
        { "tiny-llava-mha", "text_config.hidden_size", "1000000000",
          "text_config.hidden_size = 1000000000, but tensor 'language_model.model.embed_tokens.weight' in file '{weights}' has shape [602,64]" },
        { "tiny-llava-mha", "text_config.num_hidden_layers", "1000000",
          "text_config.num_hidden_layers = 1000000, but checkpoint '{weights}' has 4 decoder layers (0..3; the last is tensor 'language_model.model.layers.3." },
        { "tiny-llava-mha", "vision_config.num_hidden_layers", "1000000",
          "vision_config.num_hidden_layers = 1000000, but checkpoint '{weights}' has 3 vision layers (0..2; the last is tensor 'vision_tower.encoder.layers.2." },
        { "tiny-llava-mha", "vision_config.hidden_size", "1000000000",
          "vision_config.hidden_size = 1000000000, but tensor 'vision_tower.embeddings.patch_embedding.weight' in file '{weights}' has shape [64,3,14,14]" },
        { "tiny-llava-mha", "text_config.intermediate_size", "2000000000",
          "text_config.intermediate_size = 2000000000, but tensor 'language_model.model.layers.0.mlp.down_proj.weight' in file '{weights}' has shape [64,176]" },
        { "tiny-llava-mha", "text_config.vocab_size", "2147483647",
          "text_config.vocab_size = 2147483647, but tensor 'language_model.model.embed_tokens.weight' in file '{weights}' has shape [602,64]" },
        { "tiny-llava-mha", "text_config.head_dim", "1073741824",
          "text_config.num_attention_heads x text_config.head_dim = 4 x 1073741824 = 4294967296, but tensor 'language_model.model.layers.0.self_attn.q_proj.weight' in file '{weights}' has shape [64,64]" },
        { "tiny-llava-mha", "vision_config.image_size", "14000",
          "vision_config.image_size = 14000 with patch_size 14 (1000000 patches + the class token = 1000001 positions), but tensor 'vision_tower.embeddings.position_embedding.weight' in file '{weights}' has shape [37,64]" },
        { "tiny-llava-mha", "vision_config.image_size", "1400000",
          "vision_config.image_size 1400000 with patch_size 14 gives 10000000000 patches, more than a tensor dimension can index" },
        { "tiny-llava-mha", "image_seq_length", "2000000000",
          "image_seq_length = 2000000000, but the vision tower gives 36 image features (36 patches with strategy 'default'; tensor 'vision_tower.embeddings.position_embedding.weight' in file '{weights}' has shape [37,64])" },
        { "tiny-vicuna", "hidden_size", "1000000000",
          "hidden_size = 1000000000, but tensor 'model.embed_tokens.weight' in file '{weights}' has shape [602,64]" },
        { "tiny-vicuna", "num_hidden_layers", "1000000",
          "num_hidden_layers = 1000000, but checkpoint '{weights}' has 4 decoder layers (0..3; the last is tensor 'model.layers.3." },
    };

    [Theory]
    [MemberData(nameof(HostileConfigs))]
    public void Hostile_config_value_is_refused_naming_key_and_tensor(string fixture, string key, string value, string expected)
    {
        var dir = Copy(fixture, cfg =>
        {
            var parts = key.Split('.');
            var node = parts.Length == 2 ? cfg[parts[0]]!.AsObject() : cfg;
            node[parts[^1]] = JsonNode.Parse(value);
        });
        var e = Fails(dir, out var took);
        string weights = Path.Combine(dir, "model.safetensors");
        Assert.StartsWith($"config '{Path.Combine(dir, "config.json")}': " + expected.Replace("{weights}", weights), e.Message);
        Assert.True(took < TimeSpan.FromSeconds(5), $"took {took}");
    }

    [Fact]
    public void Missing_text_config_blames_the_default_not_the_weights()
    {
        var dir = Copy("tiny-llava-mha", cfg => cfg.Remove("text_config"));
        var e = Fails(dir, out var took);
        Assert.Equal($"config '{Path.Combine(dir, "config.json")}': text_config.hidden_size = 4096 (Hugging Face's default: config.json has no " +
                     $"text_config), but tensor 'language_model.model.embed_tokens.weight' in file '{Path.Combine(dir, "model.safetensors")}' has shape [602,64]",
            e.Message);
        Assert.True(took < TimeSpan.FromSeconds(5), $"took {took}");
    }

    [Fact]
    public void Omitted_key_is_reported_as_hugging_face_default()
    {
        var dir = Copy("tiny-vicuna", cfg => cfg.Remove("num_hidden_layers"));
        var e = Fails(dir, out _);
        Assert.Contains("num_hidden_layers = 32 (Hugging Face's default: config.json does not set it), but checkpoint", e.Message);
        Assert.Contains("has 4 decoder layers", e.Message);
    }

    [Fact]
    public void A_gap_in_the_layer_indices_is_named()
    {
        var dir = Copy("tiny-vicuna");
        var file = Path.Combine(dir, "model.safetensors");
        List<string> layer1;
        using (var f = SafetensorsFile.Open(file)) layer1 = f.Tensors.Keys.Where(k => k.StartsWith("model.layers.1.", StringComparison.Ordinal)).ToList();
        Assert.Equal(9, layer1.Count);
        foreach (var name in layer1) SafetensorsBytes.RemoveTensor(file, name);
        var e = Fails(dir, out _);
        Assert.StartsWith($"checkpoint '{file}' has decoder layers up to 3 (tensor 'model.layers.3.", e.Message);
        Assert.EndsWith("but none of layer 1 (no 'model.layers.1.*' tensors)", e.Message);
    }

    [Fact]
    public void An_integer_tensor_of_the_right_size_is_refused()
    {
        // I32 has the size of F32: the header stays consistent, only the dtype says the bytes are not weights.
        var dir = Copy("tiny-vicuna");
        var file = Path.Combine(dir, "model.safetensors");
        SafetensorsBytes.EditJson(file, o => o["model.norm.weight"]!["dtype"] = "I32");
        var e = Fails(dir, out _);
        Assert.Equal($"tensor 'model.norm.weight' in file '{file}' is stored as I32, but model weights must be floating point (F32, F16 or BF16)", e.Message);
    }

    [Theory]
    [InlineData("-4", "text_config.num_hidden_layers must be positive, found -4")]
    [InlineData("3000000000", "text_config.num_hidden_layers must be an integer, found 3000000000")]
    [InlineData("1e6", "text_config.num_hidden_layers must be an integer, found 1e6")]
    public void Negative_and_overflowing_values_are_refused_by_key(string value, string expected)
    {
        var dir = Copy("tiny-llava-mha", cfg => cfg["text_config"]!["num_hidden_layers"] = JsonNode.Parse(value));
        var e = Fails(dir, out var took);
        Assert.Equal($"config '{Path.Combine(dir, "config.json")}': {expected}", e.Message);
        Assert.True(took < TimeSpan.FromSeconds(5), $"took {took}");
    }
}
