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

/// <summary>What to compute for every example of a job, and how much of it to keep.</summary>
public sealed record AnalysisSettings
{
    public TargetMode Target { get; init; } = TargetMode.Argmax;

    /// <summary>Top heads (by log-prob increase) whose per-position scores and attention weights go to <c>position_stats</c>.</summary>
    public int TopHeads { get; init; } = 3;

    /// <summary>Top FFN neurons (by exact log-prob increase) per example in <c>neuron_stats</c>; 0 skips the neuron statistics.</summary>
    public int TopNeurons { get; init; } = 20;

    /// <summary>Neuron route (auto: exact for small models, screened for large ones).</summary>
    public NeuronRoute NeuronRoute { get; init; } = NeuronRoute.Auto;

    /// <summary>Screened route: exact scores for this many first-order candidates.</summary>
    public int ScreenK { get; init; } = 1024;

    /// <summary>Ranks per image position in <c>logit_lens</c> (the visual-token lens).</summary>
    public int LensTopK { get; init; } = 5;

    /// <summary>
    /// Examples of equal sequence length (and image or not) that share one hooked forward pass [B, T] (no padding, no
    /// attention mask); 1 runs every example alone. Batched and single-example results agree (float rounding aside).
    /// </summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>A prompt of more tokens (BOS and image tokens included) is rejected before it is tokenized where its
    /// length alone shows it; 0: the model's max_position_embeddings (the cap never exceeds it).</summary>
    public int MaxPromptTokens { get; init; }

    /// <summary>The statistics options for one example's target (null: argmax).</summary>
    public StatisticsOptions ToStatisticsOptions(long? targetId) => new()
    {
        TargetId = targetId,
        TopKHeads = TopHeads,
        Neurons = new NeuronOptions(TopNeurons > 0 ? NeuronRoute : NeuronRoute.None, ScreenK),
        LensTopK = LensTopK,
    };

    public void Validate()
    {
        if (TopHeads < 0) throw new ArgumentException($"top heads must be >= 0, got {TopHeads}");
        if (TopNeurons < 0) throw new ArgumentException($"top neurons must be >= 0, got {TopNeurons}");
        if (ScreenK < 1) throw new ArgumentException($"screen-k must be >= 1, got {ScreenK}");
        if (LensTopK < 1) throw new ArgumentException($"lens top-k must be >= 1, got {LensTopK}");
        if (BatchSize < 1) throw new ArgumentException($"batch size must be >= 1, got {BatchSize}");
    }
}

/// <summary>The model a request runs on: one warm copy per runner thread, reloaded only when this changes.</summary>
/// <param name="Dir">checkpoint folder (absolute).</param>
/// <param name="DType">auto, float32, bfloat16 or float16.</param>
public sealed record ModelSpec(string Dir, string DType = "auto");

/// <summary>One accepted manifest example, as a worker needs it (plain data: it travels inside shard leases).</summary>
/// <param name="ImagePath">absolute image path (null for tqa).</param>
/// <param name="Raw">the manifest line as written, for the <c>rejects</c> table if the example fails later.</param>
public sealed record ExampleWork(
    string Id,
    string Task,
    string? ImagePath,
    string? ImageRelative,
    string Prompt,
    string? Expected,
    double[]? ObjectBox,
    string MetadataJson,
    int Line,
    string Raw = "")
{
    public static ExampleWork From(ManifestExample e, string raw = "") =>
        new(e.Id, e.Task, e.ImagePath, e.ImageRelative, e.Prompt, e.Expected, e.ObjectBox, e.MetadataJson, e.Line, raw);
}

/// <summary>
/// Every table row one example produces, managed only (nothing TorchSharp), ready for <see cref="ShardTables"/>.
/// </summary>
/// <param name="Positions">for each top head: one row per sequence position (T rows), is_image/patch_row/patch_col from the
/// image positions (row-major patch grid of side sqrt(P); null row/col for text positions), the position's log-prob
/// increase and the head's post-softmax attention weight from the last position to it.</param>
/// <param name="Neurons">the example's top-N neurons by exact log-prob increase, with their MLP coefficient
/// m = silu(gate)·up at the last position (always available: the hooked pass captures it).</param>
/// <param name="Lens">the visual-token logit lens: for each image position, its top-k tokens (rank 0 = top).</param>
public sealed record ExampleRows(
    ExampleRow Example,
    IReadOnlyList<LayerStatRow> Layers,
    IReadOnlyList<HeadStatRow> Heads,
    IReadOnlyList<PositionStatRow> Positions,
    IReadOnlyList<NeuronStatRow> Neurons,
    IReadOnlyList<LogitLensRow> Lens)
{
    /// <summary>Appends the rows to a shard's batches.</summary>
    public void AddTo(ShardTables tables)
    {
        tables.Examples.Add(Example);
        foreach (var r in Layers) tables.LayerStats.Add(r);
        foreach (var r in Heads) tables.HeadStats.Add(r);
        foreach (var r in Positions) tables.PositionStats.Add(r);
        foreach (var r in Neurons) tables.NeuronStats.Add(r);
        foreach (var r in Lens) tables.LogitLens.Add(r);
    }
}

/// <summary>
/// The result of one example: its rows, or the reason it was rejected (unreadable image, prompt longer than the
/// model's context, an expected answer that is not one token under <see cref="TargetMode.Expected"/>, ...).
/// </summary>
public sealed record ExampleOutcome(ExampleWork Work, ExampleRows? Rows, string? RejectReason, double ForwardMs, double StatisticsMs)
{
    public bool Rejected => Rows is null;
}
