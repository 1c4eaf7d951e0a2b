using LlavaMech.Training;

namespace LlavaMech.Cli.Commands;

/// <summary><c>train-toy</c>: trains the toy LLaVA of the synthetic colour world on CPU (<see cref="ToyTrainer"/>).</summary>
public sealed class TrainToyCommand : ICliCommand
{
    private static readonly ToyTrainingOptions Defaults = new();

    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("data", "DIR", "where the training data comes from: a folder to generate it in (kept), or a folder holding a manifest.jsonl to train on (see above)"),
        new("out", "DIR", "folder the trained model is written to, Hugging Face layout (created; files in it overwritten)", Required: true),
        new("steps", "N", "optimizer steps of the main phase (after the vision pre-training)", Defaults.Steps.ToString(CultureInfo.InvariantCulture)) { Range = CommandLine.NumericRange.Int(0, 10_000_000) },
        new("time-budget", "TIME", "stop training (then save and evaluate) once this much time has passed, e.g. 30m, 900s, 1h, 00:30:00; none: no limit", "30m"),
        new("seed", "S", "seed of the weights, batch order and augmentation", Defaults.Seed.ToString(CultureInfo.InvariantCulture)) { Range = CommandLine.NumericRange.Int(int.MinValue) },
        new("threads", "N", "CPU threads for TorchSharp (0: all cores)", "0") { Range = CommandLine.NumericRange.Int(0, 4096) },
        new("held-out", "N", "generated held-out VQA examples (and as many TQA), seed HeldOutSeed; 0 skips the evaluation", Defaults.HeldOutCount.ToString(CultureInfo.InvariantCulture)) { Range = CommandLine.NumericRange.Int(0, 1_000_000) },
        new("held-out-manifest", "MANIFEST", "evaluate on this manifest (examples with expected answers) instead of generated held-out data"),
        new("config", "FILE", "JSON file of ToyTrainingOptions overrides, e.g. {\"TextLayers\": 2, \"TrainCount\": 4000}, or a training_record.json (its options)"),
    ];

    public static string Description { get; } = """
        Trains, from random weights and on CPU (TorchSharp), a small LLaVA: a CLIP-style vision tower
        (84 px images, 14 px patches: 36 image tokens), a two-layer projector and a Llama decoder, with
        the tokenizer and image processor of the tiny fixture (tests/fixtures/tiny-llava-mha, built in),
        to answer the synthetic colour world's questions: "What is the color of the circle?" about an
        image (VQA) and "What is the color of the banana?" without one (TQA). The answer is the colour
        word as the next token after "... is". The model is saved in the Hugging Face layout every
        command here loads (config.json, model.safetensors, tokenizer.json, tokenizer.model,
        tokenizer_config.json, preprocessor_config.json), then loaded back from disk and scored on
        held-out examples; training_record.json next to the weights records the options and results,
        heldout_scores.md and heldout_confusion.png the held-out answers per colour and shape, the
        confusion matrix and the binding errors (wrong answers that are another object's colour).

        --data DIR:
          - DIR holds a manifest.jsonl: train on that manifest (every line needs `expected`, a colour
            that is one token). The vision pre-training and patch losses need SynthColors' object
            metadata on 84 px images (manifests from `dataset synth-colors` at its default size);
            without it only the answer loss trains. Nothing is written to DIR. Bad lines are listed
            and nothing is trained.
          - otherwise DIR is the work folder: the training data (train/, train-circle/,
            train-triangle/, train-square/) and the held-out data (heldout/) are generated into it with
            SynthColors (deterministic: the same seeds give the same images) and kept.
          - omitted: the data is generated into a temporary folder, deleted at the end.
        The held-out set is generated with HeldOutSeed (2002), which differs from the training seeds
        and from 17, the seed of datasets/shapes-colors-mini, so the bundled 64+64 examples are
        held-out too. With a training manifest of your own, make sure it was not made with seed 2002.

        Defaults (the shipped datasets/shapes-colors-mini/toy-llava): 8000 generated VQA images (+ 3 x
        1500 with confusable distractors, and questions about every other unique question shape in each
        image) and 8000 images of varied scenes (background colours and textures, tints and shades,
        sizes, edges, scaling; see datasets/README.md): about 26,500 VQA examples, 2000 TQA; 96-wide,
        4-layer tower and decoder (1.09M parameters, 4.4 MB float32); 1500 vision pre-training steps
        (patch-level shape/colour/mask probes, as LLaVA starts from a pretrained CLIP), then 4000 steps
        of VQA batches of 32 + TQA batches of 16, AdamW with warm-up and cosine decay. On 2 shared CPU
        cores this took 15 minutes and reached 99.0% held-out VQA and 100% TQA accuracy
        ({"VariedTrainCount": 0, "TextHiddenSize": 64, ...} in --config gives the earlier, smaller model). A run on schedule is reproducible: same options, same threads, same bytes. The time
        budget is a safety stop: a run falling behind it lets its learning-rate decay keep pace with
        the clock, stops when it is spent, and is saved and scored as usual.
        Every other setting (sizes, counts, seeds, learning rates, losses) is a ToyTrainingOptions
        property, settable with --config (a JSON object of the properties to change; names as in the
        "options" of training_record.json, which can itself be passed to repeat a run). In a config,
        OutputDir, WorkDir and TrainManifest are ignored (--out and --data decide), and the options
        given on the command line win over it.

        Progress goes to stderr (phase, step, loss, running training accuracy, ETA); the held-out
        accuracies and the paths go to stdout. Exits 1 on bad data (unreadable folder, manifest with
        bad lines or without answers), 2 on a usage mistake.
        """;

    public static string Examples { get; } = """
          ./llavamech train-toy --data /tmp/toydata --out /tmp/toy-llava
          ./llavamech train-toy --out /tmp/toy-quick --steps 300 --time-budget 3m --held-out 200
          ./llavamech train-toy --data datasets/shapes-colors-mini --out /tmp/toy-mini --held-out-manifest /tmp/toydata/heldout/manifest.jsonl
          ./llavamech train-toy --config datasets/shapes-colors-mini/toy-llava/training_record.json --data /tmp/toydata --out /tmp/again
        """;

    public static int Run(CommandLine cl)
    {
        var (o, configured) = cl.Get("config") is { } configPath ? ToyTrainingSetup.ReadConfig(configPath) : (Defaults, new HashSet<string>());
        // Where things go comes from --out and --data alone (a config copied from a training record names other folders).
        o = o with { OutputDir = cl.Require("out"), WorkDir = null, TrainManifest = null };
        if (cl.Get("data") is { } dataDir)
        {
            var error = ToyTrainingSetup.CheckDataDir(dataDir, out var manifest);
            if (error is not null) return Fail(error);
            o = manifest is not null ? o with { TrainManifest = manifest } : o with { WorkDir = dataDir };
        }
        if (cl.Flag("steps")) o = o with { Steps = cl.GetInt("steps"), Epochs = null };
        // The CLI's 30-minute safety stop applies unless --time-budget or the config says otherwise.
        if (cl.Flag("time-budget") || !configured.Contains(nameof(ToyTrainingOptions.TimeBudget)))
            o = o with { TimeBudget = ToyTrainingSetup.ParseDuration(cl.Require("time-budget")) };
        if (cl.Flag("seed")) o = o with { Seed = cl.GetInt("seed") };
        if (cl.Flag("threads")) o = o with { Threads = cl.GetInt("threads") };
        if (cl.Flag("held-out")) o = o with { HeldOutCount = cl.GetInt("held-out") };
        if (cl.Get("held-out-manifest") is { } heldOut) o = o with { HeldOutManifest = heldOut };

        if (File.Exists(o.OutputDir)) return Fail($"--out {o.OutputDir} is a file, not a folder");
        if (o.TrainManifest is not null && ToyTrainingSetup.CheckManifest(o.TrainManifest, "training") is { } e1) return Fail(e1);
        if (o.HeldOutManifest is not null && ToyTrainingSetup.CheckManifest(o.HeldOutManifest, "held-out") is { } e2) return Fail(e2);

        Console.Error.WriteLine(ToyTrainingSetup.Plan(o));
        var progress = new BarProgress();
        TrainingResult r;
        try
        {
            r = ToyTrainer.Train(o, progress);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or InvalidDataException)
        {
            progress.Finish();
            return Fail(ex.Message);
        }
        progress.Finish();

        static string Acc(double acc, int n) => double.IsNaN(acc) ? "not measured" : $"{100 * acc:0.0}% ({(int)Math.Round(acc * n)}/{n})";
        string where = o.HeldOutManifest ?? (o.HeldOutCount > 0 ? $"generated, seed {o.HeldOutSeed}" : "none");
        Console.WriteLine($"held-out VQA accuracy: {Acc(r.HeldOutAccuracy, r.HeldOutCount)}   [{where}]");
        Console.WriteLine($"held-out TQA accuracy: {Acc(r.TextQaAccuracy, r.TextQaCount)}");
        if (r.HeldOutScore is { } sc)
            Console.WriteLine($"held-out VQA by colour: lowest {sc.PerColour.MinBy(g => g.Accuracy)!.Group} {100 * sc.PerColour.Min(g => g.Accuracy):0.0}%; by shape: " +
                              string.Join(", ", sc.PerShape.Select(g => $"{g.Group} {100 * g.Accuracy:0.0}%")) +
                              $"; binding errors {sc.BindingErrors} of {sc.Wrong.Count} wrong ({ToyTrainer.HeldOutReportFile}, {ToyTrainer.HeldOutConfusionFile})");
        if (progress.PlannedSteps is int planned && r.Steps < planned)
            Console.WriteLine($"note: the time budget ({o.TimeBudget:hh\\:mm\\:ss}) stopped training after {r.Steps} of {planned} steps");
        Console.WriteLine($"trained: {r.VisionPretrainSteps} vision pre-training + {r.Steps} steps on {r.TrainVqaExamples} VQA + {r.TrainTextQaExamples} TQA examples, "
                          + $"{r.TrainingTime.TotalSeconds:0} s of training ({r.Elapsed.TotalSeconds:0} s in all), {r.ParameterCount:N0} parameters");
        Console.WriteLine($"model: {r.OutputDir} (model.safetensors {r.CheckpointBytes / 1e6:0.0} MB)");
        Console.WriteLine($"record: {Path.Combine(r.OutputDir, ToyTrainer.TrainingRecordFile)}");
        if (o.WorkDir is not null) Console.WriteLine($"data: {Path.GetFullPath(o.WorkDir)}");
        return 0;
    }

    private static int Fail(string message) { Console.Error.WriteLine($"llavamech train-toy: error: {message}"); return 1; }

    /// <summary>One progress bar per phase, on stderr; reports arrive synchronously on the training thread.</summary>
    private sealed class BarProgress : IProgress<TrainingProgress>
    {
        private ProgressBar? _bar;
        private TrainingPhase? _phase;

        /// <summary>Steps the main phase planned (known once it reports).</summary>
        public int? PlannedSteps { get; private set; }

        public void Report(TrainingProgress p)
        {
            if (p.Phase != _phase)
            {
                _bar?.Done();
                _bar = null;
                _phase = p.Phase;
                string? label = p.Phase switch
                {
                    TrainingPhase.PreparingData => "encoding data",
                    TrainingPhase.PretrainingVision => "vision pre-training",
                    TrainingPhase.Training => "training",
                    TrainingPhase.Evaluating => "held-out eval",
                    _ => null,
                };
                if (label is not null) _bar = new ProgressBar(label, p.TotalSteps, p.Step);
                else if (p.Phase == TrainingPhase.Saving) Console.Error.WriteLine($"saving the model [{p.Elapsed:mm\\:ss}]");
            }
            if (p.Phase == TrainingPhase.Training) PlannedSteps = p.TotalSteps;
            _bar?.Report(p.Step, Note(p));
        }

        public void Finish() { _bar?.Done(); _bar = null; }

        private static string Note(TrainingProgress p)
        {
            static string Pct(double v) => double.IsNaN(v) ? "-" : (100 * v).ToString("0.0", CultureInfo.InvariantCulture) + "%";
            string clock = $"[{p.Elapsed:mm\\:ss}]";
            return p.Phase switch
            {
                TrainingPhase.Training => $"loss {p.Loss:0.000} acc vqa {Pct(p.VqaAccuracy)} tqa {Pct(p.TextQaAccuracy)} lr {p.LearningRate:0.0e0} {clock}",
                TrainingPhase.PretrainingVision => $"loss {p.Loss:0.000} patch shape {Pct(p.PatchShapeAccuracy)} colour {Pct(p.PatchColorAccuracy)} object {Pct(p.ObjectShapeAccuracy)} {clock}",
                _ => clock,
            };
        }
    }
}
