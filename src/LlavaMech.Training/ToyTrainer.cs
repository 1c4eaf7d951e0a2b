using System.Diagnostics;
using System.Text.Json;
using LlavaMech.Checkpoints;
using LlavaMech.Datasets;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Model;
using LlavaMech.Model.Loading;
using LlavaMech.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Training;

/// <summary>
/// Trains a small LLaVA from random weights on the synthetic colour world, on CPU: the answer
/// colour's token as the next token after the prompt, cross-entropy on that one position, for the
/// VQA questions about images and the TQA questions about everyday objects alike. The result is a
/// Hugging Face-layout folder that <see cref="LoadedModel.Load"/> reads, and its accuracy is measured
/// by loading that folder back, so the numbers are about the shipped files.
/// </summary>
public static class ToyTrainer
{
    /// <summary>Name of the file, next to the weights, recording the options and results of the run.</summary>
    public const string TrainingRecordFile = "training_record.json";

    /// <summary>The held-out VQA scores (per colour, per shape, confusion, wrong answers) and their confusion figure, beside the weights.</summary>
    public const string HeldOutReportFile = "heldout_scores.md", HeldOutConfusionFile = "heldout_confusion.png";

    public static TrainingResult Train(ToyTrainingOptions options, IProgress<TrainingProgress>? progress = null)
    {
        using var run = TrainCore(options, progress);
        return run.Result;
    }

    /// <summary>A finished run that keeps the in-memory model (for tests comparing it with the saved one).</summary>
    internal sealed class Run(TrainingResult result, LlavaForConditionalGeneration model) : IDisposable
    {
        public TrainingResult Result { get; } = result;
        public LlavaForConditionalGeneration Model { get; } = model;
        public void Dispose() => Model.Dispose();
    }

    internal static Run TrainCore(ToyTrainingOptions o, IProgress<TrainingProgress>? progress)
    {
        Validate(o);
        var clock = Stopwatch.StartNew();
        if (o.Threads > 0) set_num_threads(o.Threads);
        else set_num_threads(Environment.ProcessorCount);
        random.manual_seed(o.Seed);

        string outDir = Path.GetFullPath(o.OutputDir);
        var template = ToyTemplate.Load(o.TemplateDir);
        // Tokenizer and image processor come from the output folder itself, so training sees the
        // inputs exactly as LoadedModel.Prepare will build them from the saved model.
        template.WriteTo(outDir, o);
        var config = ModelConfig.Load(outDir);
        var tokenizer = TokenizerLoader.Load(outDir);
        var images = ClipImageProcessor.FromDirectory(outDir);
        var prompts = new PromptEncoder(tokenizer, config.Text.BosTokenId, config.ImageTokenId, config.ImageSeqLength,
            config.Text.MaxPositionEmbeddings, outDir);

        bool tempWork = o.WorkDir is null;
        string work = Path.GetFullPath(o.WorkDir ?? Path.Combine(Path.GetTempPath(), "llavamech-toy-" + Guid.NewGuid().ToString("N")[..12]));
        try
        {
            // ---- data ----
            void DataProgress(int done, int total) =>
                progress?.Report(new TrainingProgress(TrainingPhase.PreparingData, done, total, double.NaN, double.NaN, double.NaN, 0, clock.Elapsed));
            var trainExamples = new List<ManifestExample>();
            if (o.TrainManifest is not null) trainExamples.AddRange(ReadManifest(o.TrainManifest));
            else
            {
                trainExamples.AddRange(SynthColors.Generate(FreshDir(work, "train"), o.TrainCount, o.TrainSeed,
                    new SynthOptions { TextQaCount = o.TrainTextQaCount }).Examples);
                var variation = o.VariedTrainCount > 0 ? new SynthVariation() : null;
                if (variation is not null)
                    trainExamples.AddRange(SynthColors.Generate(FreshDir(work, "train-varied"), o.VariedTrainCount, ConfusableSeed(o.TrainSeed, ConfusableShapes.Count),
                        new SynthOptions { TextQaCount = 0, Variation = variation, IdPrefix = "varied" }).Examples);
                if (o.ConfusableTrainCount > 0)
                    for (int k = 0; k < ConfusableShapes.Count; k++)
                    {
                        var (asked, confusable) = ConfusableShapes[k];
                        trainExamples.AddRange(SynthColors.Generate(FreshDir(work, "train-" + asked), o.ConfusableTrainCount, ConfusableSeed(o.TrainSeed, k),
                            new SynthOptions { TextQaCount = 0, QuestionShapes = [asked], Shapes = [asked, .. confusable], IdPrefix = asked, Variation = variation }).Examples);
                    }
            }
            var data = TrainingData.Encode(trainExamples, tokenizer, prompts, images, DataProgress, config.Vision!.PatchSize, o.AllObjectQuestions);
            if (data.VqaCount == 0 && data.TqaCount == 0) throw new ArgumentException("no training examples");

            // ---- model ----
            var model = new LlavaForConditionalGeneration(config, CPU, ScalarType.Float32);
            RandomWeights.Fill(model, o.Seed, o.InitStd);
            var parameters = model.parameters().ToList();
            foreach (var p in parameters) p.requires_grad_(true);
            long parameterCount = parameters.Sum(p => p.numel());

            int totalSteps = o.Epochs is double ep
                ? Math.Max(1, (int)Math.Ceiling(ep * Math.Max(data.VqaCount, data.TqaCount) / (double)o.BatchSize))
                : o.Steps;
            var trainClock = Stopwatch.StartNew();
            int pretrainSteps;
            int steps;
            List<double> losses;
            using (var optimizer = new ToyOptimizer(model, data, o, clock, progress))
            {
                optimizer.TieGreyFilters();
                pretrainSteps = optimizer.PretrainVision();
                (steps, losses) = optimizer.Train(totalSteps);
            }
            var trainingTime = trainClock.Elapsed;

            // ---- save ----
            progress?.Report(new TrainingProgress(TrainingPhase.Saving, steps, totalSteps, double.NaN, double.NaN, double.NaN, 0, clock.Elapsed));
            model.eval();
            foreach (var p in parameters) p.requires_grad_(false);
            string weights = Path.Combine(outDir, Checkpoint.SingleFileName);
            SafetensorsWriter.Write(weights, model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)),
                o.SaveFloat16 ? SafetensorsDType.F16 : null);

            // ---- evaluate the saved folder ----
            EvaluationResult? vqa = null, tqa = null;
            ColourWorldScore? score = null;
            IReadOnlyList<ManifestExample>? heldOut = null;
            if (o.HeldOutManifest is not null) heldOut = ReadManifest(o.HeldOutManifest);
            else if (o.HeldOutCount > 0)
            {
                heldOut = SynthColors.Generate(FreshDir(work, "heldout"), o.HeldOutCount, o.HeldOutSeed).Examples;
            }
            if (heldOut is not null)
            {
                var scored = heldOut.Where(e => e.Expected is not null).ToList();
                int n = 0;
                using var loaded = LoadedModel.Load(outDir);
                var all = Evaluate(loaded, scored, () =>
                {
                    if (++n % 50 == 0 || n == scored.Count)
                        progress?.Report(new TrainingProgress(TrainingPhase.Evaluating, n, scored.Count, double.NaN, double.NaN, double.NaN, 0, clock.Elapsed));
                });
                vqa = new EvaluationResult(all.Predictions.Where(p => p.Task == ManifestTasks.Vqa).ToList());
                tqa = new EvaluationResult(all.Predictions.Where(p => p.Task == ManifestTasks.Tqa).ToList());
                if (vqa.Total > 0)
                {
                    // Per colour and shape, the confusion matrix and the binding errors, beside the weights.
                    score = ColourWorldScore.From(scored, vqa, SynthPalette.Colors.Select(c => c.Name).ToArray());
                    File.WriteAllText(Path.Combine(outDir, HeldOutReportFile), score.Markdown($"held-out VQA ({(o.HeldOutManifest ?? $"generated, seed {o.HeldOutSeed}")})"));
                    score.WriteConfusionFigure(Path.Combine(outDir, HeldOutConfusionFile), "held-out VQA: expected vs answered colour");
                }
            }

            var result = new TrainingResult(outDir, vqa?.Accuracy ?? double.NaN, tqa?.Accuracy ?? double.NaN, steps, clock.Elapsed)
            {
                VisionPretrainSteps = pretrainSteps,
                TrainingTime = trainingTime,
                HeldOutCount = vqa?.Total ?? 0,
                TextQaCount = tqa?.Total ?? 0,
                TrainVqaExamples = data.VqaCount,
                TrainTextQaExamples = data.TqaCount,
                LossHistory = losses,
                ParameterCount = parameterCount,
                CheckpointBytes = new FileInfo(weights).Length,
                HeldOutScore = score,
            };
            WriteRecord(Path.Combine(outDir, TrainingRecordFile), o, result, template.Source);
            progress?.Report(new TrainingProgress(TrainingPhase.Done, steps, totalSteps, losses.Count > 0 ? losses[^1] : double.NaN,
                result.HeldOutAccuracy, result.TextQaAccuracy, 0, clock.Elapsed));
            return new Run(result, model);
        }
        finally
        {
            if (tempWork && Directory.Exists(work))
            {
                try { Directory.Delete(work, recursive: true); }
                catch (IOException) { /* a temp folder left behind is harmless */ }
            }
        }
    }

    /// <summary>Linear warm-up to the peak, then cosine decay to MinLearningRateFraction of it.</summary>
    internal static double LearningRateAt(int step, int totalSteps, ToyTrainingOptions o) => LearningRateAt(step, totalSteps, 0, o);

    /// <param name="timeFraction">
    /// share of the time budget spent. Only when it is ahead of the share of steps done (the run would
    /// not finish in time) does the decay follow it, whichever of it and the step share is further on;
    /// a run on schedule follows the steps alone, so it does not depend on the clock and is reproducible.
    /// </param>
    internal static double LearningRateAt(int step, int totalSteps, double timeFraction, ToyTrainingOptions o)
    {
        double peak = o.LearningRate, floor = peak * o.MinLearningRateFraction;
        if (step < o.WarmupSteps) return peak * (step + 1) / o.WarmupSteps;
        double t = totalSteps <= o.WarmupSteps ? 1 : (double)(step - o.WarmupSteps) / (totalSteps - o.WarmupSteps);
        if (timeFraction > (double)step / totalSteps) t = Math.Max(t, timeFraction);
        return floor + (peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, t)));
    }

    // ---------------------------------------------------------------- evaluation

    /// <summary>
    /// Loads <paramref name="modelDir"/> and scores every example with an expected answer: the
    /// argmax of the logits at the last prompt position, as a token with its space marker trimmed,
    /// against <c>expected</c>. Examples without expected answers are skipped.
    /// </summary>
    public static EvaluationResult Evaluate(string modelDir, IEnumerable<ManifestExample> examples)
    {
        using var model = LoadedModel.Load(modelDir);
        return Evaluate(model, examples.Where(e => e.Expected is not null).ToList());
    }

    /// <summary>Scores a manifest's VQA and TQA examples separately with the model in <paramref name="modelDir"/>.</summary>
    public static (EvaluationResult Vqa, EvaluationResult Tqa) EvaluateManifest(string modelDir, string manifestPath)
    {
        var all = Evaluate(modelDir, ReadManifest(manifestPath));
        return (new EvaluationResult(all.Predictions.Where(p => p.Task == ManifestTasks.Vqa).ToList()),
                new EvaluationResult(all.Predictions.Where(p => p.Task == ManifestTasks.Tqa).ToList()));
    }

    public static EvaluationResult Evaluate(LoadedModel model, IReadOnlyList<ManifestExample> examples, Action? onExample = null)
    {
        var predictions = new List<Prediction>(examples.Count);
        foreach (var e in examples)
        {
            if (e.Expected is null) continue;
            using var scope = NewDisposeScope();
            var input = model.Prepare(e.Prompt, e.ImagePath);
            int id = (int)model.Forward(input).argmax().item<long>();
            string predicted = model.TokenText(id).Trim();
            predictions.Add(new Prediction(e.Id, e.Task, e.Expected, predicted, predicted == e.Expected));
            onExample?.Invoke();
        }
        return new EvaluationResult(predictions);
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>Each question shape with the distractor shapes most easily mistaken for it at 14-30 px.</summary>
    public static IReadOnlyList<(string Asked, string[] Confusable)> ConfusableShapes { get; } =
    [
        ("circle", ["hexagon", "star"]),
        ("triangle", ["diamond", "cross"]),
        ("square", ["diamond", "hexagon"]),
    ];

    /// <summary>Seed of confusable set k: derived from the training seed, far from it and from small seeds.</summary>
    internal static int ConfusableSeed(int trainSeed, int k) => unchecked(trainSeed * 7919 + 104_729 * (k + 1));

    private static string FreshDir(string work, string name)
    {
        var dir = Path.Combine(work, name);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        return dir;
    }

    private static IReadOnlyList<ManifestExample> ReadManifest(string path)
    {
        var r = ManifestReader.Read(path);
        if (!r.IsClean)
            throw new InvalidDataException($"manifest '{path}' has {r.Rejects.Count} bad lines; first: {r.Rejects[0].Message}");
        return r.Examples;
    }

    private static void Validate(ToyTrainingOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.OutputDir)) throw new ArgumentException("OutputDir is required");
        if (o.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(o.BatchSize), o.BatchSize, "must be at least 1");
        if (o.TextQaBatchSize < 0) throw new ArgumentOutOfRangeException(nameof(o.TextQaBatchSize), o.TextQaBatchSize, "must not be negative");
        if (o.Epochs is null && o.Steps < 0) throw new ArgumentOutOfRangeException(nameof(o.Steps), o.Steps, "must not be negative");
        if (o.Epochs is <= 0) throw new ArgumentOutOfRangeException(nameof(o.Epochs), o.Epochs, "must be positive");
        if (o.GreyPatchFilters < 0 || o.GreyPatchFilters > o.VisionHiddenSize - 3)
            throw new ArgumentOutOfRangeException(nameof(o.GreyPatchFilters), o.GreyPatchFilters,
                $"must leave at least 3 of the {o.VisionHiddenSize} patch filters free to carry colour");
        if (o.LearningRate <= 0) throw new ArgumentOutOfRangeException(nameof(o.LearningRate), o.LearningRate, "must be positive");
        if (o.WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(o.WarmupSteps), o.WarmupSteps, "must not be negative");
        if (o.TrainManifest is null && (o.TrainCount < 0 || o.TrainTextQaCount < 0))
            throw new ArgumentOutOfRangeException(nameof(o.TrainCount), "example counts must not be negative");
        if (o.TrainManifest is null && o.HeldOutManifest is null && o.HeldOutCount > 0 && o.TrainSeed == o.HeldOutSeed)
            throw new ArgumentException($"HeldOutSeed must differ from TrainSeed ({o.TrainSeed}): the held-out images would be the training images");
        // Seeds k < ConfusableShapes.Count make the confusable sets, k = ConfusableShapes.Count the varied set.
        if (o.TrainManifest is null && o.HeldOutManifest is null && o.HeldOutCount > 0
            && Enumerable.Range(0, ConfusableShapes.Count + 1).Any(k => ConfusableSeed(o.TrainSeed, k) == o.HeldOutSeed
                && (k < ConfusableShapes.Count ? o.ConfusableTrainCount > 0 : o.VariedTrainCount > 0)))
            throw new ArgumentException($"HeldOutSeed {o.HeldOutSeed} is the seed of a confusable or varied training set; choose another");
    }

    private static void WriteRecord(string path, ToyTrainingOptions o, TrainingResult r, string template)
    {
        var record = new
        {
            options = o,
            template,
            result = new
            {
                held_out_vqa_accuracy = r.HeldOutAccuracy,
                held_out_vqa_examples = r.HeldOutCount,
                text_qa_accuracy = r.TextQaAccuracy,
                text_qa_examples = r.TextQaCount,
                steps = r.Steps,
                vision_pretrain_steps = r.VisionPretrainSteps,
                train_vqa_examples = r.TrainVqaExamples,
                train_tqa_examples = r.TrainTextQaExamples,
                training_seconds = Math.Round(r.TrainingTime.TotalSeconds, 1),
                total_seconds = Math.Round(r.Elapsed.TotalSeconds, 1),
                first_loss = r.LossHistory.Count > 0 ? r.LossHistory[0] : double.NaN,
                final_loss_mean_last_50 = r.LossHistory.Count > 0 ? r.LossHistory.TakeLast(50).Average() : double.NaN,
                held_out_per_colour = r.HeldOutScore?.PerColour.ToDictionary(g => g.Group, g => Math.Round(g.Accuracy, 4)),
                held_out_per_shape = r.HeldOutScore?.PerShape.ToDictionary(g => g.Group, g => Math.Round(g.Accuracy, 4)),
                held_out_binding_errors = r.HeldOutScore?.BindingErrors,
                held_out_wrong = r.HeldOutScore?.Wrong.Count,
                parameters = r.ParameterCount,
                checkpoint_bytes = r.CheckpointBytes,
                threads = get_num_threads(),
                machine = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
            },
        };
        var json = JsonSerializer.Serialize(record, new JsonSerializerOptions
        {
            WriteIndented = true,
            NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
        });
        File.WriteAllText(path, json + "\n");
    }
}
