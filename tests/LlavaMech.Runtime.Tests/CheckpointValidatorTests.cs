using System.Text.Json.Nodes;
using LlavaMech.Checkpoints;
using LlavaMech.Processing;
using LlavaMech.Processing.Tests;
using LlavaMech.Testing;

namespace LlavaMech.Runtime.Tests;

/// <summary>The checks a job runs before any shard: every fixture passes; each kind of broken copy fails with a named reason.</summary>
public class CheckpointValidatorTests
{
    [Theory]
    [InlineData("tiny-llava-mha", "Llava", 4, 4, 176, 602, 36)]
    [InlineData("tiny-llava-336", "Llava", 2, 4, 176, 602, 576)]
    [InlineData("tiny-vicuna", "Llama", 4, 4, 176, 602, 0)]
    public void The_fixtures_validate_with_their_shapes(string fixture, string kind, int layers, int heads, int mlp, int vocab, int imageTokens)
    {
        var s = CheckpointValidator.Validate(Fixtures.Model(fixture));
        Assert.Equal(Path.GetFullPath(Fixtures.Model(fixture)), s.ModelDir);
        Assert.Equal(kind, s.Kind);
        Assert.Equal(layers, s.Layers);
        Assert.Equal(heads, s.Heads);
        Assert.Equal(mlp, s.MlpWidth);
        Assert.Equal(vocab, s.Vocab);
        Assert.Equal(imageTokens > 0, s.HasVision);
        Assert.Equal(imageTokens, s.ImageTokens);
        Assert.Matches("^[0-9a-f]{64}$", s.Fingerprint);
    }

    [Fact]
    public void An_identical_copy_validates_to_the_same_summary_but_its_own_folder()
    {
        using var tmp = Copy("tiny-llava-mha");
        var a = CheckpointValidator.Validate(Fixtures.Model("tiny-llava-mha"));
        var b = CheckpointValidator.Validate(tmp.Path);
        Assert.Equal(a with { ModelDir = b.ModelDir }, b);
        Assert.NotEqual(a.ModelDir, b.ModelDir);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void An_empty_model_path_is_refused(string dir)
    {
        var e = Assert.Throws<CheckpointException>(() => CheckpointValidator.Validate(dir));
        Assert.Equal("model directory is empty", e.Message);
    }

    [Fact]
    public void A_missing_folder_is_named()
    {
        string dir = Path.Combine(Path.GetTempPath(), "llavamech-no-model-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<CheckpointException>(() => CheckpointValidator.Validate(dir));
        Assert.Equal($"model directory '{dir}' does not exist", e.Message);
    }

    [Fact]
    public void Truncated_weights_are_refused_naming_the_file()
    {
        using var tmp = Copy("tiny-llava-mha");
        string st = tmp.File("model.safetensors");
        using (var f = new FileStream(st, FileMode.Open)) f.SetLength(f.Length - 4096);
        var e = Assert.Throws<CheckpointException>(() => CheckpointValidator.Validate(tmp.Path));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void A_config_that_does_not_match_the_weights_is_refused_naming_a_weight_and_both_shapes()
    {
        using var tmp = Copy("tiny-llava-mha");
        var config = JsonNode.Parse(File.ReadAllText(tmp.File("config.json")))!.AsObject();
        config["text_config"]!["intermediate_size"] = 180;
        File.WriteAllText(tmp.File("config.json"), config.ToJsonString());
        var e = Assert.Throws<CheckpointException>(() => CheckpointValidator.Validate(tmp.Path));
        Assert.Contains("mlp", e.Message);
        Assert.Contains("176", e.Message);
        Assert.Contains("180", e.Message);
    }

    [Fact]
    public void An_unreadable_config_is_refused_naming_config_json()
    {
        using var tmp = Copy("tiny-llava-mha");
        File.WriteAllText(tmp.File("config.json"), "{ \"model_type\": \"llava\", ");
        var e = Assert.Throws<CheckpointException>(() => CheckpointValidator.Validate(tmp.Path));
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void A_llava_checkpoint_without_its_image_processor_config_is_refused_naming_it()
    {
        using var tmp = Copy("tiny-llava-mha");
        File.Delete(tmp.File("preprocessor_config.json"));
        var e = Assert.ThrowsAny<Exception>(() => CheckpointValidator.Validate(tmp.Path));
        Assert.True(e is ProcessingException or CheckpointException or IOException, e.GetType().Name + ": " + e.Message);
        Assert.Contains("preprocessor_config.json", e.Message);
    }

    [Fact]
    public void A_checkpoint_without_a_tokenizer_is_refused_naming_the_tokenizer_files()
    {
        using var tmp = Copy("tiny-vicuna");
        File.Delete(tmp.File("tokenizer.json"));
        var e = Assert.ThrowsAny<Exception>(() => CheckpointValidator.Validate(tmp.Path));
        Assert.True(e is ProcessingException or CheckpointException or IOException, e.GetType().Name + ": " + e.Message);
        Assert.Contains("tokenizer.json", e.Message);
    }

    private static TempDir Copy(string fixture)
    {
        var tmp = new TempDir();
        foreach (var f in Directory.GetFiles(Fixtures.Model(fixture)))
        {
            if (Path.GetFileName(f) == ModelFingerprint.CacheFileName) continue;
            string to = tmp.File(Path.GetFileName(f));
            File.Copy(f, to);
            File.SetAttributes(to, FileAttributes.Normal);
        }
        return tmp;
    }
}
