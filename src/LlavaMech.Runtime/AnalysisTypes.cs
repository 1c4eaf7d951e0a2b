using LlavaMech.Analysis;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Storage;

namespace LlavaMech.Runtime;

/// <summary>Which token the statistics explain.</summary>
public enum TargetMode
{
    /// <summary>The model's argmax at the last position.</summary>
    Argmax,

    /// <summary>The manifest's expected answer as one token (examples without one fall back to the argmax).</summary>
    Expected,
}

/// <summary>
/// What to compute for every example of a job, and how much of it to keep: the one record of the analysis options.
/// The CLI's options of <c>run</c>, <c>submit</c>, <c>reanalyze</c> and <c>bench-pipeline</c>, the job spec, the run
/// record (<c>_pipeline/run.json</c>) and the workers all use it; each option is declared once, here
/// (<see cref="SettingAttribute"/>: name, help, range; the default is the initial value).
/// </summary>
public sealed record AnalysisSettings
{
    [Setting("target", "MODE", "the token explained: argmax (the model's answer) or expected (the manifest's answer as one token; lines without one use the argmax)")]
    public TargetMode Target { get; init; } = TargetMode.Argmax;

    /// <summary>Top heads (by log-prob increase) whose per-position scores and attention weights go to <c>position_stats</c>.</summary>
    [Setting("top-heads", "K", "heads per example whose position scores go to position_stats", Min = 0, Max = 4096)]
    public int TopHeads { get; init; } = 3;

    /// <summary>Top FFN neurons (by exact log-prob increase) per example in <c>neuron_stats</c>; 0 skips the neuron statistics.</summary>
    [Setting("top-neurons", "N", "neurons per example in neuron_stats (0: skip the neuron statistics)", Min = 0, Max = 1 << 20)]
    public int TopNeurons { get; init; } = 20;

    /// <summary>Neuron route (auto: exact for small models, screened for large ones).</summary>
    [Setting("neurons", "ROUTE", "neuron route (auto: exact for small models, screened for large ones)")]
    public NeuronRoute NeuronRoute { get; init; } = NeuronRoute.Auto;

    /// <summary>Screened route: exact scores for this many first-order candidates.</summary>
    [Setting("screen-k", "K", "screened route: exact scores for the K best first-order candidates", Min = 1, Max = 1 << 24)]
    public int ScreenK { get; init; } = 1024;

    /// <summary>Ranks per image position in <c>logit_lens</c> (the visual-token lens).</summary>
    [Setting("lens-top-k", "K", "tokens per image position in logit_lens (the visual-token logit lens)", Min = 1, Max = 1000)]
    public int LensTopK { get; init; } = 5;

    /// <summary>
    /// Examples of equal sequence length (and image or not) that share one hooked forward pass [B, T] (no padding, no
    /// attention mask); 1 runs every example alone. Batched and single-example results agree (float rounding aside).
    /// </summary>
    [Setting("batch-size", "N", "examples of equal sequence length per hooked forward pass (1: one example per pass); results do not depend on it",
        Min = 1, Max = 4096, ResultNeutral = true)]
    public int BatchSize { get; init; } = 8;

    /// <summary>A prompt of more tokens (BOS and image tokens included) is rejected before it is tokenized where its
    /// length alone shows it; 0: the model's max_position_embeddings (the cap never exceeds it).</summary>
    [Setting("max-prompt-tokens", "N", "a longer prompt (BOS and image tokens included) is rejected, before it is tokenized where its length shows it (0: the model's max_position_embeddings)",
        Min = 0, Max = 1 << 24)]
    public int MaxPromptTokens { get; init; }

    /// <summary>
    /// Heads zero-ablated per selection and example in <c>causal_effects</c> (<see cref="Stats.CausalEffects"/>): the
    /// example's top K by head log-prob increase, its top K by attention share on the image, and K random ones; 0: off
    /// (no table rows, no extra pass). At most the model's layers x heads, checked per model (<see cref="CheckModel"/>).
    /// </summary>
    [Setting("causal", "K", "zero-ablate K heads per example three ways (log_increase, attention, random) into causal_effects (0: off)",
        Min = 0, Max = 1 << 20)]
    public int Causal { get; init; }

    /// <summary>
    /// Layers per window of <c>knockout_effects</c> (<see cref="Stats.KnockoutEffects"/>): attention from the last position
    /// to the image tokens knocked out in each window of W consecutive layers; 0: off. At most the model's layers.
    /// </summary>
    [Setting("knockout-window", "W", "knock out last:image attention in each window of W consecutive layers into knockout_effects (0: off)",
        Min = 0, Max = 4096)]
    public int KnockoutWindow { get; init; }

    /// <summary>
    /// Examples that share an image and a token prefix (the system text and the image's tokens, at least) run the prefix
    /// once, the vision tower and the decoder's keys and values, and each question from it (docs/METHOD.md, "Prefix
    /// reuse"): every table comes out as with <see cref="Runtime.PrefixReuse.Off"/>, to float rounding.
    /// </summary>
    [Setting("prefix-reuse", "MODE", "on: the questions about one image share one pass over the image and the prompt text before the question (every table as with off, to float rounding); off: a full pass per question; auto: on where that shared prefix has at least 256 tokens (any real LLaVA image has more), off below (the toy model's 42-token prefix runs faster in batched full passes)",
        ResultNeutral = true)]
    public PrefixReuse PrefixReuse { get; init; } = PrefixReuse.Auto;

    /// <summary>Bytes (MiB) the reused prefixes may hold per model, least recently used evicted; 0: <see cref="PrefixCache.DefaultBytes"/>.</summary>
    [Setting("prefix-cache-mib", "MIB", "MiB of reused prefixes kept per model, least recently used evicted (0: 2048 on CPU, 4096 on CUDA); a prefix larger than this runs as full passes",
        Min = 0, Max = 1 << 22, ResultNeutral = true)]
    public int PrefixCacheMiB { get; init; }

    /// <summary>MiB of the model's unembedded head blocks and neuron columns kept across examples (<see cref="UnembeddedDirections"/>); 0: its default.</summary>
    [Setting("readout-cache-mib", "MIB", "MiB of the model's head and neuron directions read through the unembedding, kept across examples for the position and neuron statistics (0: 1024 on CPU, 2048 on CUDA)",
        Min = 0, Max = 1 << 22, ResultNeutral = true)]
    public int ReadoutCacheMiB { get; init; }

    /// <summary>
    /// The checks that need the model: <see cref="Causal"/> at most its heads (layers x heads per layer),
    /// <see cref="KnockoutWindow"/> at most its layers. Throws <see cref="ArgumentException"/> naming the option.
    /// </summary>
    public void CheckModel(int layers, int headsPerLayer)
    {
        if (Causal > layers * headsPerLayer)
            throw new ArgumentException($"--causal {Causal}: the model has {layers * headsPerLayer} heads ({layers} layers x {headsPerLayer}); use 0-{layers * headsPerLayer}");
        if (KnockoutWindow > layers)
            throw new ArgumentException($"--knockout-window {KnockoutWindow}: the model has {layers} layers; use 0-{layers}");
    }

    /// <summary>The statistics options for one example's target (null: argmax).</summary>
    public StatisticsOptions ToStatisticsOptions(long? targetId) => new()
    {
        TargetId = targetId,
        TopKHeads = TopHeads,
        Neurons = new NeuronOptions(TopNeurons > 0 ? NeuronRoute : NeuronRoute.None, ScreenK, Keep: TopNeurons),
        LensTopK = LensTopK,
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option outside its declared range.</summary>
    public void Validate() => Settings.Check(this);
}

/// <summary>Whether the questions about one image share one pass over their common prefix (<see cref="AnalysisSettings.PrefixReuse"/>).</summary>
public enum PrefixReuse
{
    /// <summary>On where the shared prefix has at least <see cref="PipelineAnalyzer.AutoPrefixTokens"/> tokens, off below.</summary>
    Auto,
    On,
    Off,
}

/// <summary>The model a request runs on: one warm copy per runner thread, reloaded only when this changes.</summary>
/// <param name="Dir">checkpoint folder (absolute).</param>
/// <param name="DType">auto, float32, bfloat16 or float16.</param>
public sealed record ModelSpec(string Dir, string DType = "auto");

/// <summary>
/// Every table row one example produces (rows of the tables of <see cref="Stats.StatisticCatalog"/>, in table
/// order), managed only (nothing TorchSharp), ready for <see cref="ShardTables.AddRows"/>.
/// </summary>
public sealed record ExampleRows(IReadOnlyList<object> All)
{
    /// <summary>The example's <c>examples</c> row.</summary>
    public ExampleRow Example => All.OfType<ExampleRow>().Single();

    /// <summary>The rows of one table.</summary>
    public IReadOnlyList<TRow> Of<TRow>() where TRow : class => All.OfType<TRow>().ToList();
}

/// <summary>
/// The result of one example: its rows, or the reason it was rejected (unreadable image, prompt longer than the
/// model's context, an expected answer that is not one token under <see cref="TargetMode.Expected"/>, ...).
/// </summary>
public sealed record ExampleOutcome(ManifestExample Work, ExampleRows? Rows, string? RejectReason, double ForwardMs, double StatisticsMs)
{
    public bool Rejected => Rows is null;
}
