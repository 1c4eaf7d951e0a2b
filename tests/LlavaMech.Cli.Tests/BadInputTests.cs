using LlavaMech.Testing;

namespace LlavaMech.Cli.Tests;

/// <summary>Bad input ends with exit code 1 (2 for usage) and a message that names the file and the problem.</summary>
public class BadInputTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-bad-").FullName;
    private const string VisionPrompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private string CopyModel(string fixture)
    {
        var dir = Path.Combine(_tmp, fixture);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Fixtures.Model(fixture)).Where(f => !Path.GetFileName(f).StartsWith("golden_")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    private static CliRunner.Result Forward(string model, string prompt, string? image = null) =>
        image is null ? CliRunner.Run("forward", "--model", model, "--prompt", prompt)
                      : CliRunner.Run("forward", "--model", model, "--prompt", prompt, "--image", image);

    [Fact]
    public void Truncated_safetensors_names_the_file_and_says_truncated()
    {
        var dir = CopyModel("tiny-llava-mha");
        var path = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length - 1000)]);
        var r = Forward(dir, VisionPrompt, Fixtures.File("tiny-llava-mha", "red_circle.png"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(path, r.Stderr);
        Assert.Contains("truncated", r.Stderr);
    }

    [Fact]
    public void Corrupt_safetensors_header_names_the_file()
    {
        var dir = CopyModel("tiny-vicuna");
        var path = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        bytes[9] = (byte)'#';   // inside the JSON header
        File.WriteAllBytes(path, bytes);
        var r = Forward(dir, "The color of the sky is");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(path, r.Stderr);
        Assert.Contains("JSON", r.Stderr);
    }

    [Fact]
    public void Missing_tokenizer_is_named()
    {
        var dir = CopyModel("tiny-vicuna");
        File.Delete(Path.Combine(dir, "tokenizer.json"));
        var r = Forward(dir, "The color of the sky is");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(dir, r.Stderr);
        Assert.Contains("tokenizer", r.Stderr);
    }

    [Fact]
    public void A_vision_prompt_without_image_placeholder_is_refused()
    {
        var r = Forward(Fixtures.Model("tiny-llava-mha"), "What is the color of the circle?", Fixtures.File("tiny-llava-mha", "red_circle.png"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("<image>", r.Stderr);
    }

    [Fact]
    public void Two_image_placeholders_are_refused()
    {
        var r = Forward(Fixtures.Model("tiny-llava-mha"), "USER: <image> <image>\nWhat?", Fixtures.File("tiny-llava-mha", "red_circle.png"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("<image>", r.Stderr);
    }

    [Fact]
    public void An_unreadable_image_names_the_file()
    {
        var img = Path.Combine(_tmp, "broken.png");
        File.WriteAllText(img, "this is not a png");
        var r = Forward(Fixtures.Model("tiny-llava-mha"), VisionPrompt, img);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(img, r.Stderr);
    }

    [Fact]
    public void A_prompt_longer_than_the_context_is_refused_with_its_length()
    {
        var longPrompt = "USER: <image>\n" + string.Concat(Enumerable.Repeat("red green blue ", 400));
        var r = Forward(Fixtures.Model("tiny-llava-mha"), longPrompt, Fixtures.File("tiny-llava-mha", "red_circle.png"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("1024", r.Stderr);
    }

    [Fact]
    public void An_image_for_a_text_only_model_is_refused()
    {
        var r = Forward(Fixtures.Model("tiny-vicuna"), VisionPrompt, Fixtures.File("tiny-llava-mha", "red_circle.png"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("text-only", r.Stderr);
    }

    [Fact]
    public void A_wrong_shape_in_the_checkpoint_is_named()
    {
        var dir = CopyModel("tiny-vicuna");
        var cfg = File.ReadAllText(Path.Combine(dir, "config.json")).Replace("\"intermediate_size\": 176", "\"intermediate_size\": 180");
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg);
        var r = Forward(dir, "The color of the sky is");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("model.layers.0.mlp.down_proj.weight", r.Stderr);
        Assert.Contains("[64,176]", r.Stderr);
    }

    [Fact]
    public void Unknown_options_and_missing_required_options_are_usage_errors()
    {
        var r = CliRunner.Run("forward", "--model", Fixtures.Model("tiny-vicuna"), "--bogus", "1");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--bogus", r.Stderr);
        r = CliRunner.Run("forward", "--prompt", "x");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--model", r.Stderr);
    }

    [Fact]
    public void A_missing_model_folder_is_named()
    {
        var r = Forward(Path.Combine(_tmp, "nope"), "hello");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("nope", r.Stderr);
    }
}
