using LlavaMech.Model;

namespace LlavaMech.Training.Tests;

/// <summary>What train-toy checks and reads before training: durations, option overrides, the data folder, manifests.</summary>
public sealed class ToyTrainingSetupTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-toysetup-").FullName;

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [Theory]
    [InlineData("15m", 900)]
    [InlineData("900s", 900)]
    [InlineData("900", 900)]
    [InlineData("1h30m", 5400)]
    [InlineData("0.5m", 30)]
    [InlineData("00:15:00", 900)]
    public void Durations_parse_to_seconds(string text, double seconds) =>
        Assert.Equal(TimeSpan.FromSeconds(seconds), ToyTrainingSetup.ParseDuration(text));

    [Theory]
    [InlineData("none")]
    [InlineData("0")]
    [InlineData("off")]
    public void No_budget_is_null(string text) => Assert.Null(ToyTrainingSetup.ParseDuration(text));

    [Theory]
    [InlineData("15x")]
    [InlineData("m")]
    [InlineData("-5m")]
    public void Bad_durations_are_option_errors(string text) =>
        Assert.Contains("--time-budget", Assert.Throws<InvalidOptionException>(() => ToyTrainingSetup.ParseDuration(text)).Message);

    [Fact]
    public void A_config_overrides_the_defaults_by_name_case_insensitively_and_says_what_it_set()
    {
        var path = Path.Combine(_tmp, "c.json");
        File.WriteAllText(path, "{ \"textLayers\": 2, \"TrainCount\": 40, // a comment\n }");
        var (o, set) = ToyTrainingSetup.ReadConfig(path);
        Assert.Equal(2, o.TextLayers);
        Assert.Equal(40, o.TrainCount);
        Assert.Equal(new ToyTrainingOptions().Steps, o.Steps);
        Assert.True(set.SetEquals(["TextLayers", "TrainCount"]), string.Join(",", set));
    }

    [Fact]
    public void A_training_record_contributes_its_options()
    {
        var path = Path.Combine(_tmp, "training_record.json");
        File.WriteAllText(path, "{ \"options\": { \"Steps\": 7 }, \"result\": { \"steps\": 7 } }");
        Assert.Equal(7, ToyTrainingSetup.ReadConfig(path).Options.Steps);
    }

    [Fact]
    public void Unknown_options_and_bad_json_are_option_errors_naming_the_file()
    {
        var path = Path.Combine(_tmp, "bad.json");
        File.WriteAllText(path, "{ \"NoSuchOption\": 1 }");
        var e = Assert.Throws<InvalidOptionException>(() => ToyTrainingSetup.ReadConfig(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("unknown option(s) NoSuchOption", e.Message);
        File.WriteAllText(path, "{ not json");
        Assert.Contains("not valid JSON", Assert.Throws<InvalidOptionException>(() => ToyTrainingSetup.ReadConfig(path)).Message);
    }

    [Fact]
    public void A_data_folder_with_a_manifest_is_trained_on_and_a_file_is_refused()
    {
        var withManifest = Directory.CreateDirectory(Path.Combine(_tmp, "data")).FullName;
        File.WriteAllText(Path.Combine(withManifest, "manifest.jsonl"), "");
        Assert.Null(ToyTrainingSetup.CheckDataDir(withManifest, out var manifest));
        Assert.Equal(Path.Combine(withManifest, "manifest.jsonl"), manifest);

        var fresh = Path.Combine(_tmp, "fresh");
        Assert.Null(ToyTrainingSetup.CheckDataDir(fresh, out manifest));
        Assert.Null(manifest);
        Assert.True(Directory.Exists(fresh));

        var file = Path.Combine(_tmp, "file.txt");
        File.WriteAllText(file, "x");
        Assert.Contains("is a file", ToyTrainingSetup.CheckDataDir(file, out _));
    }

    [Fact]
    public void A_training_manifest_without_answers_is_refused_with_its_lines()
    {
        var path = Path.Combine(_tmp, "m.jsonl");
        File.WriteAllText(path, "{\"id\":\"t1\",\"task\":\"tqa\",\"prompt\":\"What is the color of the sky?\"}\n");
        var problem = ToyTrainingSetup.CheckManifest(path, "training");
        Assert.NotNull(problem);
        Assert.Contains("line 1: 't1' has no expected answer", problem);
        Assert.Contains("has no example with an expected answer", ToyTrainingSetup.CheckManifest(path, "held-out"));
    }
}
