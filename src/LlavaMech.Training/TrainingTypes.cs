namespace LlavaMech.Training;

public enum TrainingPhase
{
    /// <summary>Generating and encoding the training data (Step/TotalSteps count examples).</summary>
    PreparingData,
    /// <summary>Optimizer steps of the optional vision pre-training (tower and projector on the patch loss alone).</summary>
    PretrainingVision,
    /// <summary>Optimizer steps.</summary>
    Training,
    /// <summary>Writing the model folder.</summary>
    Saving,
    /// <summary>Loading the saved folder and scoring the held-out examples (Step/TotalSteps count examples).</summary>
    Evaluating,
    Done,
}

/// <summary>One progress report.</summary>
/// <param name="Phase">What is under way.</param>
/// <param name="Step">Steps (or, outside training, items) done.</param>
/// <param name="TotalSteps">Steps (items) planned; a time budget may stop training earlier.</param>
/// <param name="Loss">Mean training loss over the last reporting window (VQA + weighted TQA); NaN outside training.</param>
/// <param name="VqaAccuracy">Running training accuracy on the VQA batches of the last window (NaN outside training).</param>
/// <param name="TextQaAccuracy">Running training accuracy on the TQA batches of the last window (NaN when none).</param>
/// <param name="LearningRate">Current learning rate (0 outside training).</param>
/// <param name="Elapsed">Time since <see cref="ToyTrainer.Train"/> began.</param>
public sealed record TrainingProgress(TrainingPhase Phase, int Step, int TotalSteps, double Loss, double VqaAccuracy,
    double TextQaAccuracy, double LearningRate, TimeSpan Elapsed)
{
    /// <summary>With the patch loss: accuracy of the shape probe on the object patches of the last window (NaN otherwise).</summary>
    public double PatchShapeAccuracy { get; init; } = double.NaN;

    /// <summary>With the patch loss: accuracy of the colour probe on the object patches of the last window (NaN otherwise).</summary>
    public double PatchColorAccuracy { get; init; } = double.NaN;

    /// <summary>With the object loss: accuracy of the object-shape probe (mean of an object's patch features) in the last window.</summary>
    public double ObjectShapeAccuracy { get; init; } = double.NaN;

    /// <summary>With the mask loss: pixel accuracy of the object-mask probe in the last window.</summary>
    public double MaskAccuracy { get; init; } = double.NaN;

    public override string ToString() => Phase switch
    {
        TrainingPhase.Training =>
            $"step {Step}/{TotalSteps} loss {Loss:0.0000} vqa-acc {VqaAccuracy:P1} tqa-acc {TextQaAccuracy:P1} lr {LearningRate:0.00e0}{Patches} [{Elapsed:mm\\:ss}]",
        TrainingPhase.PretrainingVision => $"vision step {Step}/{TotalSteps} loss {Loss:0.0000} lr {LearningRate:0.00e0}{Patches} [{Elapsed:mm\\:ss}]",
        _ => $"{Phase} {Step}/{TotalSteps} [{Elapsed:mm\\:ss}]",
    };

    private string Patches => (double.IsNaN(PatchShapeAccuracy) ? "" : $" patch-acc shape {PatchShapeAccuracy:P1} colour {PatchColorAccuracy:P1}")
        + (double.IsNaN(ObjectShapeAccuracy) ? "" : $" object-shape {ObjectShapeAccuracy:P1}")
        + (double.IsNaN(MaskAccuracy) ? "" : $" mask {MaskAccuracy:P1}");
}

/// <summary>What a training run produced.</summary>
/// <param name="OutputDir">Absolute path of the saved model folder.</param>
/// <param name="HeldOutAccuracy">VQA accuracy of the saved model (loaded back with <c>LoadedModel.Load</c>) on the held-out examples; NaN when not evaluated.</param>
/// <param name="TextQaAccuracy">TQA accuracy of the saved model on the held-out TQA examples; NaN when not evaluated.</param>
/// <param name="Steps">Optimizer steps taken.</param>
/// <param name="Elapsed">Wall time of the whole run (data, training, saving, evaluation).</param>
public sealed record TrainingResult(string OutputDir, double HeldOutAccuracy, double TextQaAccuracy, int Steps, TimeSpan Elapsed)
{
    /// <summary>Steps of the vision pre-training phase (before <see cref="Steps"/>).</summary>
    public int VisionPretrainSteps { get; init; }

    /// <summary>Wall time of the optimizer steps alone (both phases).</summary>
    public TimeSpan TrainingTime { get; init; }

    /// <summary>Held-out VQA and TQA examples scored.</summary>
    public int HeldOutCount { get; init; }
    public int TextQaCount { get; init; }

    /// <summary>VQA and TQA training examples used.</summary>
    public int TrainVqaExamples { get; init; }
    public int TrainTextQaExamples { get; init; }

    /// <summary>Training loss of every step (VQA + weighted TQA).</summary>
    public IReadOnlyList<double> LossHistory { get; init; } = [];

    /// <summary>The held-out VQA answers per colour and shape, with the confusion matrix and binding errors (null: not evaluated).</summary>
    public ColourWorldScore? HeldOutScore { get; init; }

    /// <summary>Parameters of the model, and bytes of model.safetensors.</summary>
    public long ParameterCount { get; init; }
    public long CheckpointBytes { get; init; }
}

/// <summary>One scored example.</summary>
public sealed record Prediction(string Id, string Task, string Expected, string Predicted, bool IsCorrect);

/// <summary>Accuracy of next-token answers on a set of examples.</summary>
public sealed record EvaluationResult(IReadOnlyList<Prediction> Predictions)
{
    public int Total => Predictions.Count;
    public int Correct => Predictions.Count(p => p.IsCorrect);

    /// <summary>Correct / Total; NaN for an empty set.</summary>
    public double Accuracy => Total == 0 ? double.NaN : (double)Correct / Total;

    public override string ToString() => $"{Correct}/{Total} ({Accuracy:P1})";
}
