using System.Text.Json;
using LlavaMech.Model;
using LlavaMech.Testing;

namespace LlavaMech.Cli.Tests;

/// <summary><c>train-toy</c> as a user runs it: a tiny config trains in seconds; bad input exits non-zero and says why.</summary>
public sealed class TrainToyCommandTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-train-toy-").FullName;

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private static string BundledDir => Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini");

    /// <summary>A model and data small enough for a few seconds of training (every training feature on).</summary>
    private string TinyConfig()
    {
        var path = Path.Combine(_tmp, "tiny.json");
        File.WriteAllText(path, """
            {
              // comments are allowed
              "TrainCount": 8, "TrainTextQaCount": 8, "ConfusableTrainCount": 2, "VariedTrainCount": 0, "HeldOutCount": 6,
              "TrainSeed": 5, "HeldOutSeed": 6, "GreyPatchFilters": 24, "VisionPretrainSteps": 5, "VisionPretrainBatchSize": 8,
              "TextHiddenSize": 32, "TextIntermediateSize": 64, "TextLayers": 2, "TextHeads": 2,
              "VisionHiddenSize": 32, "VisionIntermediateSize": 64, "VisionLayers": 2, "VisionHeads": 2,
              "steps": 40, "BatchSize": 8, "TextQaBatchSize": 8, "LearningRate": 0.01, "WarmupSteps": 4, "Seed": 3,
              "OutputDir": "ignored: --out decides"
            }
            """);
        return path;
    }

    [Fact]
    public void Tiny_config_trains_saves_a_loadable_model_and_reports_held_out_accuracy()
    {
        string data = Path.Combine(_tmp, "data"), outDir = Path.Combine(_tmp, "model");
        var r = CliRunner.Run("train-toy", "--config", TinyConfig(), "--data", data, "--out", outDir, "--steps", "30", "--threads", "1", "--held-out", "5");
        Assert.True(r.ExitCode == 0, r.Stderr);

        // Progress on stderr: every phase, with loss and running accuracy while training.
        Assert.Contains("vision pre-training [", r.Stderr);
        Assert.Matches(@"training \[#+\] 30/30 .*ETA .*loss \d+\.\d{3} acc vqa \d+\.\d% tqa \d+\.\d%", r.Stderr);
        Assert.Contains("held-out eval [", r.Stderr);
        // Results on stdout.
        Assert.Matches(@"held-out VQA accuracy: \d+\.\d% \(\d/5\)", r.Stdout);
        Assert.Matches(@"held-out TQA accuracy: \d+\.\d% \(\d/5\)", r.Stdout);
        string record = Path.Combine(outDir, "training_record.json");
        Assert.Contains($"record: {record}", r.Stdout);

        // --data DIR without a manifest is the work folder: the generated data stays there.
        foreach (var sub in new[] { "train", "train-circle", "train-triangle", "train-square", "heldout" })
            Assert.True(File.Exists(Path.Combine(data, sub, "manifest.jsonl")), sub);

        // The record: command line over config over defaults; the config's OutputDir ignored.
        using var doc = JsonDocument.Parse(File.ReadAllText(record));
        var o = doc.RootElement.GetProperty("options");
        Assert.Equal(30, o.GetProperty("Steps").GetInt32());               // --steps over the config's 40
        Assert.Equal(2, o.GetProperty("TextLayers").GetInt32());            // config
        Assert.Equal(5, o.GetProperty("HeldOutCount").GetInt32());
        Assert.Equal(1, o.GetProperty("Threads").GetInt32());
        Assert.Equal("00:30:00", o.GetProperty("TimeBudget").GetString());  // the CLI's safety stop
        Assert.Equal(outDir, o.GetProperty("OutputDir").GetString());
        Assert.Equal(data, o.GetProperty("WorkDir").GetString());
        var result = doc.RootElement.GetProperty("result");
        Assert.Equal(30, result.GetProperty("steps").GetInt32());
        Assert.Equal(5, result.GetProperty("held_out_vqa_examples").GetInt32());

        // The folder is a model every command loads.
        using var model = LoadedModel.Load(outDir);
        Assert.Equal(2, model.Config.Text.NumHiddenLayers);
        Assert.Equal(32, model.Config.Vision!.HiddenSize);
    }

    [Fact]
    public void Data_folder_with_a_manifest_is_trained_on_and_left_untouched()
    {
        // A copy of the bundled set (64 VQA + 64 TQA): train on it, score on the same manifest.
        string data = Path.Combine(_tmp, "mini"), outDir = Path.Combine(_tmp, "model");
        CopyDir(BundledDir, data, skip: "toy-llava");
        var before = Directory.GetFileSystemEntries(data, "*", SearchOption.AllDirectories).Order().ToArray();
        string manifest = Path.Combine(data, "manifest.jsonl");
        var r = CliRunner.Run("train-toy", "--config", TinyConfig(), "--data", data, "--out", outDir, "--steps", "10", "--held-out-manifest", manifest);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains($"data: manifest {manifest}", r.Stderr);
        Assert.Matches(@"held-out VQA accuracy: \d+\.\d% \(\d+/64\)", r.Stdout);
        Assert.Matches(@"held-out TQA accuracy: \d+\.\d% \(\d+/64\)", r.Stdout);
        // The asked questions plus those about the other unique question shapes; the bundled set's object metadata enables the vision phase.
        Assert.Matches(@"trained: 5 vision pre-training \+ 10 steps on \d{2,3} VQA \+ 64 TQA examples", r.Stdout);
        Assert.Equal(before, Directory.GetFileSystemEntries(data, "*", SearchOption.AllDirectories).Order().ToArray());
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "training_record.json")));
        Assert.Equal(manifest, doc.RootElement.GetProperty("options").GetProperty("TrainManifest").GetString());
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("options").GetProperty("WorkDir").ValueKind);
    }

    [Fact]
    public void Manifest_with_bad_lines_lists_them_and_trains_nothing()
    {
        string data = Path.Combine(_tmp, "bad"), outDir = Path.Combine(_tmp, "model");
        Directory.CreateDirectory(data);
        File.WriteAllLines(Path.Combine(data, "manifest.jsonl"),
        [
            """{"id": "t1", "task": "tqa", "prompt": "USER: What is the color of the banana?\nASSISTANT: The color of the banana is", "expected": "yellow"}""",
            """{"id": "t2", "task": "tqa", "prompt": "no closing brace" """,
            """{"id": "t3", "task": "tqa", "prompt": "USER: What is the color of the sky?\nASSISTANT: The color of the sky is"}""",
            """{"id": "v1", "task": "vqa", "image": "missing.png", "prompt": "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is", "expected": "red"}""",
        ]);
        var r = CliRunner.Run("train-toy", "--data", data, "--out", outDir);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("3 bad line(s), nothing trained", r.Stderr);
        Assert.Contains("line 2:", r.Stderr);
        Assert.Contains("line 4:", r.Stderr);
        Assert.Contains("line 3: 't3' has no expected answer", r.Stderr);
        Assert.Contains("dataset validate", r.Stderr);
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public void Bad_arguments_exit_non_zero_with_the_reason()
    {
        var noOut = CliRunner.Run("train-toy", "--data", _tmp);
        Assert.Equal(2, noOut.ExitCode);
        Assert.Contains("needs --out", noOut.Stderr);

        var file = Path.Combine(_tmp, "afile");
        File.WriteAllText(file, "x");
        var dataIsFile = CliRunner.Run("train-toy", "--data", file, "--out", Path.Combine(_tmp, "m"));
        Assert.Equal(1, dataIsFile.ExitCode);
        Assert.Contains($"--data {file} is a file", dataIsFile.Stderr);

        var config = Path.Combine(_tmp, "typo.json");
        File.WriteAllText(config, """{"TextLayerz": 2}""");
        var typo = CliRunner.Run("train-toy", "--config", config, "--out", Path.Combine(_tmp, "m"));
        Assert.Equal(2, typo.ExitCode);
        Assert.Contains("unknown option(s) TextLayerz", typo.Stderr);
        Assert.Contains("TextLayers", typo.Stderr);

        var budget = CliRunner.Run("train-toy", "--time-budget", "soon", "--out", Path.Combine(_tmp, "m"));
        Assert.Equal(2, budget.ExitCode);
        Assert.Contains("--time-budget soon", budget.Stderr);

        var seeds = CliRunner.Run("train-toy", "--config", WriteConfig("""{"HeldOutSeed": 1001}"""), "--out", Path.Combine(_tmp, "m"));
        Assert.Equal(1, seeds.ExitCode);
        Assert.Contains("HeldOutSeed must differ from TrainSeed", seeds.Stderr);
    }

    [Fact]
    public void Help_explains_the_data_folder_and_the_defaults()
    {
        var r = CliRunner.Run("train-toy", "--help");
        Assert.Equal(0, r.ExitCode);
        foreach (var s in new[] { "--data DIR", "manifest.jsonl", "--out DIR", "--time-budget", "--held-out-manifest", "--config FILE", "training_record.json", "ToyTrainingOptions", "examples:" })
            Assert.Contains(s, r.Stdout);
        Assert.Contains("train-toy", CliRunner.Run("--help").Stdout);
    }

    private string WriteConfig(string json)
    {
        var path = Path.Combine(_tmp, Guid.NewGuid().ToString("N")[..8] + ".json");
        File.WriteAllText(path, json);
        return path;
    }

    private static void CopyDir(string from, string to, string skip)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from).Where(d => Path.GetFileName(d) != skip))
            CopyDir(d, Path.Combine(to, Path.GetFileName(d)), skip);
    }
}
