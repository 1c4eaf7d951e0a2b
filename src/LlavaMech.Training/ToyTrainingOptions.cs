namespace LlavaMech.Training;

/// <summary>
/// Everything <see cref="ToyTrainer.Train"/> needs. The defaults are the settings that made
/// datasets/shapes-colors-mini/toy-llava (see its dataset card).
/// </summary>
public sealed record ToyTrainingOptions
{
    // ---- where things go ----

    /// <summary>Folder the trained model is written to (Hugging Face layout); created, files in it overwritten.</summary>
    public string OutputDir { get; init; } = "toy-llava";

    /// <summary>
    /// Folder for the generated training and held-out data. Null: a fresh temporary folder, deleted
    /// when training ends. A given folder is kept (its train/ and heldout/ subfolders are rewritten).
    /// </summary>
    public string? WorkDir { get; init; }

    /// <summary>
    /// Folder holding the tokenizer (tokenizer.json, tokenizer.model, tokenizer_config.json),
    /// preprocessor_config.json and a llava config.json whose vocabulary and special-token ids the
    /// toy model takes. Null: the tiny fixture's (tests/fixtures/tiny-llava-mha), built into this assembly.
    /// </summary>
    public string? TemplateDir { get; init; }

    // ---- data ----

    /// <summary>
    /// Train on this manifest (vqa and tqa lines with <c>expected</c>) instead of generating data.
    /// Null: <see cref="TrainCount"/> VQA and <see cref="TrainTextQaCount"/> TQA examples from
    /// <c>SynthColors.Generate</c> with <see cref="TrainSeed"/>.
    /// </summary>
    public string? TrainManifest { get; init; }

    /// <summary>Generated VQA training examples (images).</summary>
    public int TrainCount { get; init; } = 8000;

    /// <summary>Generated TQA training examples (they cycle over the 43 objects of <c>SynthPalette.TextQaObjects</c>).</summary>
    public int TrainTextQaCount { get; init; } = 2000;

    public int TrainSeed { get; init; } = 1001;

    /// <summary>
    /// Further generated VQA training images whose scenes vary in everything that does not change the answer
    /// (<c>SynthVariation</c>: background colour and texture, shades, sizes, edges, scaling, same-colour distractors), so
    /// the model answers by the asked object rather than by one generator's look. When above 0 the confusable sets
    /// (<see cref="ConfusableTrainCount"/>) vary too. 8000 (the default, which trained the shipped checkpoint: 99.5% of
    /// 2,640 scenes of the tests' independent generator, every colour 98.3% or more); 0: only the classic scenes (the earlier checkpoint: 87.1% there).
    /// </summary>
    public int VariedTrainCount { get; init; } = 8000;

    /// <summary>
    /// Extra generated VQA training images per question shape whose distractors are only the shapes
    /// most easily mistaken for it (<see cref="ToyTrainer.ConfusableShapes"/>: circle among hexagons
    /// and stars, triangle among diamonds and crosses, square among diamonds and hexagons); 0: none.
    /// </summary>
    public int ConfusableTrainCount { get; init; } = 1500;

    /// <summary>
    /// Also ask, for every training image, about each other object whose shape is a question shape
    /// and unique in the image (from the generator's object list): more answers per image, and
    /// answers that differ only by the shape asked.
    /// </summary>
    public bool AllObjectQuestions { get; init; } = true;

    /// <summary>
    /// Evaluate on this manifest instead of generated held-out data. Null: <see cref="HeldOutCount"/>
    /// VQA and as many TQA examples from <c>SynthColors.Generate</c> with <see cref="HeldOutSeed"/>.
    /// </summary>
    public string? HeldOutManifest { get; init; }

    /// <summary>Generated held-out VQA examples (and as many TQA ones); 0 skips the evaluation.</summary>
    public int HeldOutCount { get; init; } = 500;

    /// <summary>Must differ from <see cref="TrainSeed"/> (and from 17, the seed of the bundled mini set).</summary>
    public int HeldOutSeed { get; init; } = 2002;

    // ---- model (CLIP tower at 84 px / patch 14 = 36 image tokens, projector, Llama decoder) ----

    public int TextHiddenSize { get; init; } = 96;
    public int TextIntermediateSize { get; init; } = 264;
    public int TextLayers { get; init; } = 4;
    public int TextHeads { get; init; } = 4;

    public int VisionHiddenSize { get; init; } = 96;
    public int VisionIntermediateSize { get; init; } = 384;

    /// <summary>Encoder layers of the tower; LLaVA reads layer -2, so the last one is carried but never run.</summary>
    public int VisionLayers { get; init; } = 4;
    public int VisionHeads { get; init; } = 4;

    /// <summary>Standard deviation of the random initialisation (<c>RandomWeights.Fill</c>).</summary>
    public double InitStd { get; init; } = 0.02;

    // ---- optimisation ----

    /// <summary>Optimizer steps (each: one VQA batch and one TQA batch). Ignored when <see cref="Epochs"/> is set.</summary>
    public int Steps { get; init; } = 4000;

    /// <summary>Passes over the VQA training examples; overrides <see cref="Steps"/> when set.</summary>
    public double? Epochs { get; init; }

    /// <summary>VQA examples per step.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>TQA examples per step (0: no TQA training).</summary>
    public int TextQaBatchSize { get; init; } = 16;

    /// <summary>Weight of the TQA loss against the VQA loss.</summary>
    public double TextQaLossWeight { get; init; } = 0.5;

    /// <summary>Peak AdamW learning rate: linear warm-up, then cosine decay to <see cref="MinLearningRateFraction"/> of it.</summary>
    public double LearningRate { get; init; } = 2e-3;

    public int WarmupSteps { get; init; } = 100;
    public double MinLearningRateFraction { get; init; } = 0.05;
    public double WeightDecay { get; init; } = 0.01;
    public double Beta2 { get; init; } = 0.98;

    /// <summary>Gradient norm clip (0: none).</summary>
    public double GradClip { get; init; } = 1.0;

    /// <summary>
    /// Weight of an auxiliary loss on the image features (the projector outputs the decoder reads):
    /// two linear probes, used only during training and not saved, classify each patch's object
    /// shape and colour (background included), labelled from the generator's object list. It teaches
    /// the tower to see shapes far sooner than the single answer token does. 0: answer loss only.
    /// </summary>
    public double PatchLossWeight { get; init; } = 0.5;

    /// <summary>
    /// Weight, inside the patch loss, of a third probe that classifies each object's shape from the
    /// mean feature of its patches. 0: none.
    /// </summary>
    public double ObjectLossWeight { get; init; } = 1.0;

    /// <summary>
    /// Weight, inside the patch loss, of a probe that redraws each patch's object mask (which of its
    /// pixels differ from the background) from the patch's feature: a dense, colour-free target. 0: none.
    /// </summary>
    public double MaskLossWeight { get; init; } = 1.0;

    /// <summary>
    /// Steps of a first phase that trains only the vision tower and projector (with the probes) on
    /// the patch loss, as LLaVA starts from a pretrained CLIP; 0: none. Needs object metadata (generated data).
    /// </summary>
    public int VisionPretrainSteps { get; init; } = 1500;

    /// <summary>
    /// With a <see cref="TimeBudget"/>: the share of it the vision pre-training may take (its
    /// learning-rate decay keeps pace with that share of the clock, and it stops when it is spent).
    /// </summary>
    public double VisionPretrainBudgetShare { get; init; } = 0.5;

    /// <summary>Images per vision pre-training step.</summary>
    public int VisionPretrainBatchSize { get; init; } = 64;

    /// <summary>Peak learning rate of the vision pre-training (null: <see cref="LearningRate"/>).</summary>
    public double? VisionPretrainLearningRate { get; init; } = 1.5e-3;

    /// <summary>
    /// Patch-embedding filters kept channel-tied (the same 14x14 pattern on R, G and B: a grey filter)
    /// throughout training, by projecting them back after every optimizer step. A grey filter sees an
    /// object's outline scaled by its contrast with the background, whatever its colour, so after the
    /// tower's layer norm the outline features are shared by all colours instead of being learnt once
    /// per colour. The other filters stay free (they carry the colour). 0: none.
    /// </summary>
    public int GreyPatchFilters { get; init; } = 56;

    /// <summary>
    /// Keep the grey filters zero-sum too, so a flat patch (background or object interior) gives
    /// them no response and the light/dark background level drops out of them.
    /// </summary>
    public bool GreyFiltersZeroMean { get; init; } = true;

    /// <summary>
    /// Keep the other patch filters (those after the grey ones) spatially flat: each then reads the
    /// patch's mean colour, and the colour and outline features stay apart.
    /// </summary>
    public bool FlatColourFilters { get; init; } = true;

    /// <summary>Mirror each training image left-right with probability 1/2 (every shape drawn is left-right symmetric).</summary>
    public bool FlipAugment { get; init; } = true;

    /// <summary>Seed of the weights, the batch order and the augmentation.</summary>
    public int Seed { get; init; } = 0;

    /// <summary>CPU threads for TorchSharp (0: all cores).</summary>
    public int Threads { get; init; }

    /// <summary>
    /// Stop training (then save and evaluate as usual) once this much time has passed since
    /// <see cref="ToyTrainer.Train"/> began. Null: no limit. A run falling behind it (a larger share
    /// of the budget spent than of the steps done) lets its learning-rate decay follow the clock, so
    /// it still ends cooled down; a run on schedule never reads the clock and is reproducible.
    /// </summary>
    public TimeSpan? TimeBudget { get; init; }

    /// <summary>Store the weights as float16 (half the size); float32 otherwise.</summary>
    public bool SaveFloat16 { get; init; }

    /// <summary>Progress reports during training come every this many steps (and at the last one).</summary>
    public int ReportEvery { get; init; } = 10;
}
