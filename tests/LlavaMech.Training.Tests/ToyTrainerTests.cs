using LlavaMech.Checkpoints;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Model;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Training.Tests;

public sealed class ToyTrainerTests : IDisposable
{
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), "llavamech-training-tests-" + Guid.NewGuid().ToString("N")[..10]);

    private static string BundledManifest => Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "manifest.jsonl");

    public void Dispose()
    {
        if (Directory.Exists(_tmp)) Directory.Delete(_tmp, recursive: true);
    }

    /// <summary>A model small enough to train for a few dozen steps in a couple of seconds; every training feature on.</summary>
    private ToyTrainingOptions Tiny(string name) => new()
    {
        OutputDir = Path.Combine(_tmp, name),
        WorkDir = Path.Combine(_tmp, name + "-work"),
        TrainCount = 8,
        TrainTextQaCount = 8,
        ConfusableTrainCount = 2,
        AllObjectQuestions = true,
        HeldOutCount = 6,
        TrainSeed = 5,
        HeldOutSeed = 6,
        GreyPatchFilters = 24,
        GreyFiltersZeroMean = true,
        FlatColourFilters = true,
        PatchLossWeight = 0.5,
        ObjectLossWeight = 1,
        MaskLossWeight = 1,
        VisionPretrainSteps = 5,
        VisionPretrainBatchSize = 8,
        VariedTrainCount = 0,
        TextHiddenSize = 32,
        TextIntermediateSize = 64,
        TextLayers = 2,
        TextHeads = 2,
        VisionHiddenSize = 32,
        VisionIntermediateSize = 64,
        VisionLayers = 2,
        VisionHeads = 2,
        Steps = 40,
        BatchSize = 8,
        TextQaBatchSize = 8,
        LearningRate = 1e-2,
        WarmupSteps = 4,
        Seed = 3,
    };

    [Fact]
    public void ShortRunLowersTheLossAndSavesALoadableFolderWithTheSameLogits()
    {
        var reports = new List<TrainingProgress>();
        var o = Tiny("short");
        using var run = ToyTrainer.TrainCore(o, new Sync(reports.Add));
        var r = run.Result;

        Assert.Equal(40, r.Steps);
        Assert.Equal(5, r.VisionPretrainSteps);
        Assert.Equal(40, r.LossHistory.Count);
        Assert.True(r.TrainVqaExamples >= 8 + 3 * 2, $"{r.TrainVqaExamples} VQA examples");   // 8 + 3 confusable sets of 2, plus the other objects' questions
        Assert.Equal(8, r.TrainTextQaExamples);
        double first = r.LossHistory.Take(5).Average(), last = r.LossHistory.TakeLast(5).Average();
        // Random init gives about ln(602) = 6.4 (VQA) + 0.5 x 6.4 (TQA) + 0.5 x the patch losses (shape, colour,
        // object, mask: about 7 at first, a little less after the 5 vision steps); 40 steps on so few examples memorise much of it (measured: 12.06 -> 4.80).
        Assert.True(first is > 10.0 and < 14.0, $"first losses {first:0.000}");
        Assert.True(last < 0.5 * first, $"loss fell only from {first:0.000} to {last:0.000}");
        Console.WriteLine($"short run: loss {first:0.000} -> {last:0.000}");

        // Progress: data, the vision phase, then every 10th training step with a loss, then saving, evaluating, done.
        Assert.Equal([5], reports.Where(p => p.Phase == TrainingPhase.PretrainingVision).Select(p => p.Step));
        var training = reports.Where(p => p.Phase == TrainingPhase.Training).ToList();
        Assert.Equal([10, 20, 30, 40], training.Select(p => p.Step));
        Assert.All(training, p => Assert.Equal(40, p.TotalSteps));
        Assert.True(training[^1].Loss < training[0].Loss);
        Assert.InRange(training[^1].VqaAccuracy, 0, 1);
        Assert.Equal(TrainingPhase.PreparingData, reports[0].Phase);
        Assert.Equal(TrainingPhase.Done, reports[^1].Phase);
        Assert.Contains(reports, p => p.Phase == TrainingPhase.Saving);
        Assert.Contains(reports, p => p.Phase == TrainingPhase.Evaluating);

        // The folder has the Hugging Face layout, the options' sizes and exactly the expected weights.
        foreach (var f in new[] { "config.json", "model.safetensors", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "preprocessor_config.json", ToyTrainer.TrainingRecordFile })
            Assert.True(File.Exists(Path.Combine(r.OutputDir, f)), f);
        var config = ModelConfig.Load(r.OutputDir);
        Assert.Equal((32, 64, 2, 2, 16), (config.Text.HiddenSize, config.Text.IntermediateSize, config.Text.NumHiddenLayers, config.Text.NumAttentionHeads, config.Text.HeadDim));
        Assert.Equal((32, 64, 2, 2, 84, 14), (config.Vision!.HiddenSize, config.Vision.IntermediateSize, config.Vision.NumHiddenLayers, config.Vision.NumAttentionHeads, config.Vision.ImageSize, config.Vision.PatchSize));
        Assert.Equal((602, 600, 36, -2), (config.Text.VocabSize, config.ImageTokenId, config.ImageSeqLength, config.VisionFeatureLayer));
        using (var ckpt = Checkpoint.Open(r.OutputDir))
        {
            var expected = config.ExpectedWeights();
            Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), ckpt.Tensors.Keys.Order(StringComparer.Ordinal));
            Assert.All(ckpt.Tensors.Values, t => Assert.Equal(SafetensorsDType.F32, t.DType));
            Assert.Equal(r.ParameterCount, config.ParameterCount());
            Assert.Equal(new FileInfo(Path.Combine(r.OutputDir, "model.safetensors")).Length, r.CheckpointBytes);
        }

        // The patch filters kept their shapes: the first 24 grey and zero-sum, the other 8 flat.
        using (var scope = NewDisposeScope())
        {
            var w = run.Model.named_parameters().Single(p => p.name == "vision_tower.embeddings.patch_embedding.weight").parameter; // [32, 3, 14, 14]
            var grey = w.narrow(0, 0, 24);
            Assert.True((grey - grey.narrow(1, 0, 1)).abs().max().item<float>() < 1e-6f, "grey filters differ between channels");
            Assert.True(grey.sum([2, 3]).abs().max().item<float>() < 1e-4f, "grey filters are not zero-sum");
            Assert.True(grey.abs().max().item<float>() > 1e-3f);
            var flat = w.narrow(0, 24, 8);
            Assert.True((flat - flat.narrow(2, 0, 1).narrow(3, 0, 1)).abs().max().item<float>() < 1e-6f, "colour filters are not flat");
        }

        // Held-out scoring ran on the saved folder.
        Assert.Equal(6, r.HeldOutCount);
        Assert.Equal(6, r.TextQaCount);
        Assert.InRange(r.HeldOutAccuracy, 0, 1);
        Assert.InRange(r.TextQaAccuracy, 0, 1);

        // Round trip: the loaded model's logits are the in-memory model's, for an image and a text prompt.
        using var loaded = LoadedModel.Load(r.OutputDir);
        var bundled = ManifestReader.Read(BundledManifest).Examples;
        foreach (var e in new[] { bundled.First(x => x.IsVqa), bundled.First(x => !x.IsVqa) })
        {
            using var scope = NewDisposeScope();
            var input = loaded.Prepare(e.Prompt, e.ImagePath);
            var fromDisk = loaded.Forward(input);                          // [V]
            var (ids, pixels) = loaded.ToTensors(input);
            Tensor inMemory;
            using (no_grad()) inMemory = run.Model.Forward(ids, pixels, null)[0, 0];
            Assert.Equal(602, fromDisk.shape[0]);
            double diff = (fromDisk - inMemory).abs().max().item<float>();
            Assert.True(diff == 0, $"{e.Id}: saved and in-memory logits differ by {diff}");
        }
    }

    [Fact]
    public void VariedScenesJoinTheTrainingDataAndTheHeldOutSetIsScoredPerColourAndShape()
    {
        var o = Tiny("varied") with { VariedTrainCount = 8, Steps = 6 };
        using var run = ToyTrainer.TrainCore(o, null);
        var r = run.Result;
        var varied = Directory.GetFiles(Path.Combine(o.WorkDir!, "train-varied", "images"));
        Assert.Equal(8, varied.Length);
        Assert.True(r.TrainVqaExamples >= 8 + 8 + 3 * 2, $"{r.TrainVqaExamples} VQA examples");
        // The varied manifests name each object's drawn shade; the confusable sets vary too.
        Assert.Contains("\"rgb\"", File.ReadAllText(Path.Combine(o.WorkDir!, "train-varied", "manifest.jsonl")));
        Assert.Contains("\"rgb\"", File.ReadAllText(Path.Combine(o.WorkDir!, "train-circle", "manifest.jsonl")));
        Assert.DoesNotContain("\"rgb\"", File.ReadAllText(Path.Combine(o.WorkDir!, "train", "manifest.jsonl")));

        var score = r.HeldOutScore!;
        Assert.Equal(r.HeldOutCount, score.Total);
        Assert.Equal(score.Total, score.PerColour.Sum(g => g.Total));
        Assert.Equal(score.Total, score.PerShape.Sum(g => g.Total));
        Assert.Equal(score.Total - score.Correct, score.Wrong.Count);
        Assert.True(File.Exists(Path.Combine(o.OutputDir, ToyTrainer.HeldOutReportFile)));
        Assert.True(new FileInfo(Path.Combine(o.OutputDir, ToyTrainer.HeldOutConfusionFile)).Length > 1000);
        using var record = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(o.OutputDir, ToyTrainer.TrainingRecordFile)));
        Assert.Equal(score.BindingErrors, record.RootElement.GetProperty("result").GetProperty("held_out_binding_errors").GetInt32());
    }

    [Fact]
    public void ShippedToyModelAnswersTheBundledQuestions()
    {
        string dir = Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "toy-llava");
        var (vqa, tqa) = ToyTrainer.EvaluateManifest(dir, BundledManifest);
        Assert.Equal(64, vqa.Total);
        Assert.Equal(64, tqa.Total);
        Console.WriteLine($"shipped toy-llava on the bundled set: VQA {vqa}, TQA {tqa}; wrong: "
                          + string.Join(", ", vqa.Predictions.Concat(tqa.Predictions).Where(p => !p.IsCorrect).Select(p => $"{p.Id} {p.Expected}->{p.Predicted}")));
        // Measured when the model was shipped: see datasets/shapes-colors-mini/README.md.
        Assert.True(vqa.Accuracy >= ShippedVqaFloor, $"bundled VQA accuracy {vqa}; wrong: {string.Join(", ", vqa.Predictions.Where(p => !p.IsCorrect).Select(p => $"{p.Id} {p.Expected}->{p.Predicted}"))}");
        Assert.True(tqa.Accuracy >= ShippedTqaFloor, $"bundled TQA accuracy {tqa}");
    }

    // Measured on the shipped checkpoint: VQA 59/64 (0.922), TQA 64/64. The floors are the issue's
    // (a retrained checkpoint must still clear them), two and three examples below the measurement.
    private const double ShippedVqaFloor = 0.90;
    private const double ShippedTqaFloor = 0.95;

    [Fact]
    public void ShippedToyModelRecordsItsHeldOutAccuracy()
    {
        string dir = Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "toy-llava");
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, ToyTrainer.TrainingRecordFile)));
        var result = doc.RootElement.GetProperty("result");
        Assert.True(result.GetProperty("held_out_vqa_examples").GetInt32() >= 200);
        Assert.True(result.GetProperty("held_out_vqa_accuracy").GetDouble() >= 0.95);
        Assert.True(new FileInfo(Path.Combine(dir, "model.safetensors")).Length < 6_000_000);   // 1.09M float32 parameters: 4.4 MB
        var options = doc.RootElement.GetProperty("options");
        // Trained to the end (the time budget did not cut it short), in minutes: 857 s of training on 2 cores (the
        // previous checkpoint 920 s on cores shared with other work; the earlier, smaller one 365 s).
        Assert.Equal(options.GetProperty("Steps").GetInt32(), result.GetProperty("steps").GetInt32());
        Assert.Equal(options.GetProperty("VisionPretrainSteps").GetInt32(), result.GetProperty("vision_pretrain_steps").GetInt32());
        Assert.True(result.GetProperty("training_seconds").GetDouble() <= 20 * 60);
        Assert.NotEqual(options.GetProperty("TrainSeed").GetInt32(), options.GetProperty("HeldOutSeed").GetInt32());
        Assert.NotEqual(17, options.GetProperty("HeldOutSeed").GetInt32());
        Assert.NotEqual(17, options.GetProperty("TrainSeed").GetInt32());
    }

    [Fact]
    public void LearningRateWarmsUpThenDecays()
    {
        var o = new ToyTrainingOptions { LearningRate = 1e-3, WarmupSteps = 10, MinLearningRateFraction = 0.1 };
        Assert.Equal(1e-4, ToyTrainer.LearningRateAt(0, 110, o), 12);
        Assert.Equal(1e-3, ToyTrainer.LearningRateAt(9, 110, o), 12);
        Assert.Equal(1e-3, ToyTrainer.LearningRateAt(10, 110, o), 12);
        Assert.Equal(0.55e-3, ToyTrainer.LearningRateAt(60, 110, o), 12);
        Assert.Equal(1e-4, ToyTrainer.LearningRateAt(110, 110, o), 12);
    }

    [Fact]
    public void TheClockMovesTheLearningRateOnlyWhenARunFallsBehind()
    {
        var o = new ToyTrainingOptions { LearningRate = 1e-3, WarmupSteps = 10, MinLearningRateFraction = 0.1 };
        // On schedule (10% of the budget spent at 55% of the steps): the steps alone decide.
        Assert.Equal(ToyTrainer.LearningRateAt(60, 110, o), ToyTrainer.LearningRateAt(60, 110, 0.10, o));
        // Just after warm-up a little time has always passed: still the step schedule (no clock in a reproducible run).
        Assert.Equal(1e-3, ToyTrainer.LearningRateAt(10, 110, 0.001, o), 12);
        // Behind (90% of the budget spent at 55% of the steps): the decay keeps pace with the clock.
        Assert.Equal(1e-4 + 0.9e-3 * 0.5 * (1 + Math.Cos(Math.PI * 0.9)), ToyTrainer.LearningRateAt(60, 110, 0.9, o), 12);
    }

    [Fact]
    public void RunsWithATimeBudgetAreReproducible()
    {
        // A budget far from being spent must not let the clock into the result.
        byte[] Weights(string name)
        {
            var o = Tiny(name) with { WorkDir = Path.Combine(_tmp, "same-work"), HeldOutCount = 0, Steps = 15, TimeBudget = TimeSpan.FromMinutes(15) };
            ToyTrainer.Train(o);
            return File.ReadAllBytes(Path.Combine(o.OutputDir, "model.safetensors"));
        }
        Assert.True(Weights("again-1").AsSpan().SequenceEqual(Weights("again-2")), "two identical runs saved different weights");
    }

    [Fact]
    public void ConfigKeepsTheFixtureVocabularyAndTakesTheOptionsSizes()
    {
        var template = ToyTemplate.Load(null);
        var o = new ToyTrainingOptions { TextHiddenSize = 96, TextLayers = 3, TextHeads = 4, VisionHiddenSize = 48, VisionLayers = 4, VisionHeads = 3, SaveFloat16 = true };
        var c = ModelConfig.Parse(template.ConfigJson(o), "toy");
        var fixture = ModelConfig.Load(Fixtures.Model("tiny-llava-mha"));
        Assert.Equal(ModelKind.Llava, c.Kind);
        Assert.Equal((96, 3, 4, 4, 24), (c.Text.HiddenSize, c.Text.NumHiddenLayers, c.Text.NumAttentionHeads, c.Text.NumKeyValueHeads, c.Text.HeadDim));
        Assert.Equal((48, 4, 3), (c.Vision!.HiddenSize, c.Vision.NumHiddenLayers, c.Vision.NumAttentionHeads));
        Assert.Equal((fixture.Text.VocabSize, fixture.Text.BosTokenId, fixture.Text.EosTokenId, fixture.Text.PadTokenId, fixture.ImageTokenId, fixture.ImageSeqLength),
            (c.Text.VocabSize, c.Text.BosTokenId, c.Text.EosTokenId, c.Text.PadTokenId, c.ImageTokenId, c.ImageSeqLength));
        Assert.Equal((fixture.VisionFeatureLayer, fixture.VisionFeatureSelectStrategy, fixture.ProjectorHiddenAct), (c.VisionFeatureLayer, c.VisionFeatureSelectStrategy, c.ProjectorHiddenAct));
        Assert.Contains("\"torch_dtype\": \"float16\"", template.ConfigJson(o));
        Assert.Throws<ArgumentException>(() => template.ConfigJson(o with { TextHeads = 5 }));
    }

    [Fact]
    public void BuiltInTemplateIsTheTinyFixtures()
    {
        // src/LlavaMech.Training/Template holds copies (the Docker build sees src/ only): they must not drift.
        var assembly = typeof(ToyTrainer).Assembly;
        foreach (var name in ToyTemplate.CopiedFiles.Append(ToyTemplate.ConfigFile))
        {
            using var s = assembly.GetManifestResourceStream("toy-template/" + name)!;
            Assert.NotNull(s);
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            Assert.True(File.ReadAllBytes(Fixtures.File("tiny-llava-mha", name)).AsSpan().SequenceEqual(ms.ToArray()), $"{name} differs from the fixture's");
        }
    }

    [Fact]
    public void RefusesAHeldOutSeedEqualToTheTrainingSeed()
    {
        var o = Tiny("seeds") with { HeldOutSeed = 5 };
        var e = Assert.Throws<ArgumentException>(() => ToyTrainer.Train(o));
        Assert.Contains("HeldOutSeed", e.Message);
    }

    private sealed class Sync(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
