using Parquet.Schema;

namespace LlavaMech.Storage;

/// <summary>Names of the pipeline's output tables: each is a folder <c>&lt;out&gt;/&lt;table&gt;/</c> of Parquet part files.</summary>
public static class TableNames
{
    public const string Examples = "examples";
    public const string LayerStats = "layer_stats";
    public const string HeadStats = "head_stats";
    public const string PositionStats = "position_stats";
    public const string NeuronStats = "neuron_stats";
    public const string LogitLens = "logit_lens";
    public const string Rejects = "rejects";
    public const string HeadSummary = "head_summary";
    public const string LayerSummary = "layer_summary";

    /// <summary>The tables a shard writes (one part file each per committed shard).</summary>
    public static IReadOnlyList<string> ShardTables { get; } =
        [Examples, LayerStats, HeadStats, PositionStats, NeuronStats, LogitLens, Rejects];

    /// <summary>The derived tables that <see cref="Aggregates"/> writes (one file each, rewritten on every run).</summary>
    public static IReadOnlyList<string> SummaryTables { get; } = [HeadSummary, LayerSummary];

    public static bool IsShardTable(string table) => ShardTables.Contains(table, StringComparer.Ordinal);
}

/// <summary>Values of <c>layer_stats.component</c>.</summary>
public static class Components
{
    public const string Attention = "attn";
    public const string Ffn = "ffn";

    public static bool IsValid(string component) => component is Attention or Ffn;
}

/// <summary>
/// The Parquet schema of every table. Plain physical types only: strings are BYTE_ARRAY annotated UTF8 (logical type
/// String), ints INT32, doubles DOUBLE, bools BOOLEAN; REQUIRED unless documented nullable (OPTIONAL). Every shard
/// table starts with <c>run_id</c> and <c>model_fingerprint</c>. See TABLES.md.
/// </summary>
public static class TableSchemas
{
    internal static DataField<string> Str(string name, bool nullable = false) => new(name, nullable);
    internal static DataField<int> Int(string name) => new(name, false);
    internal static DataField<int?> NullableInt(string name) => new(name, true);
    internal static DataField<double> Dbl(string name) => new(name, false);
    internal static DataField<double?> NullableDbl(string name) => new(name, true);
    internal static DataField<bool> Bool(string name) => new(name, false);
    internal static DataField<bool?> NullableBool(string name) => new(name, true);

    internal static readonly DataField<string> RunId = Str("run_id");
    internal static readonly DataField<string> ModelFingerprint = Str("model_fingerprint");

    internal static class ExampleFields
    {
        public static readonly DataField<string> ExampleId = Str("example_id");
        public static readonly DataField<string> Task = Str("task");
        public static readonly DataField<string> Prompt = Str("prompt");
        public static readonly DataField<int> TargetId = Int("target_id");
        public static readonly DataField<string> TargetToken = Str("target_token");
        public static readonly DataField<double> TargetProb = Dbl("target_prob");
        public static readonly DataField<string> Expected = Str("expected", nullable: true);
        public static readonly DataField<bool?> Correct = NullableBool("correct");
        public static readonly DataField<int> SeqLen = Int("seq_len");
        public static readonly DataField<int> NumImageTokens = Int("num_image_tokens");
        public static readonly DataField<string> Metadata = Str("metadata");
    }

    internal static class StatFields
    {
        public static readonly DataField<string> ExampleId = Str("example_id");
        public static readonly DataField<int> Layer = Int("layer");
        public static readonly DataField<int> Head = Int("head");
        public static readonly DataField<string> Component = Str("component");
        public static readonly DataField<double> LogProbIncrease = Dbl("log_prob_increase");
        public static readonly DataField<double?> AttnToImage = NullableDbl("attn_to_image");
        public static readonly DataField<int> Position = Int("position");
        public static readonly DataField<bool> IsImage = Bool("is_image");
        public static readonly DataField<int?> PatchRow = NullableInt("patch_row");
        public static readonly DataField<int?> PatchCol = NullableInt("patch_col");
        public static readonly DataField<double> AttnWeight = Dbl("attn_weight");
        public static readonly DataField<int> Neuron = Int("neuron");
        public static readonly DataField<double> Coefficient = Dbl("coefficient");
        public static readonly DataField<int> Rank = Int("rank");
        public static readonly DataField<int> TokenId = Int("token_id");
        public static readonly DataField<string> Token = Str("token");
        public static readonly DataField<int> Line = Int("line");
        public static readonly DataField<string> Reason = Str("reason");
        public static readonly DataField<string> Raw = Str("raw");
        public static readonly DataField<long> RawBytes = new("raw_bytes", false);
        public static readonly DataField<string> RawSha256 = Str("raw_sha256");
    }

    public static ParquetSchema Examples { get; } = new(RunId, ModelFingerprint,
        ExampleFields.ExampleId, ExampleFields.Task, ExampleFields.Prompt, ExampleFields.TargetId, ExampleFields.TargetToken,
        ExampleFields.TargetProb, ExampleFields.Expected, ExampleFields.Correct, ExampleFields.SeqLen,
        ExampleFields.NumImageTokens, ExampleFields.Metadata);

    public static ParquetSchema LayerStats { get; } = new(RunId, ModelFingerprint,
        StatFields.ExampleId, StatFields.Layer, StatFields.Component, StatFields.LogProbIncrease);

    public static ParquetSchema HeadStats { get; } = new(RunId, ModelFingerprint,
        StatFields.ExampleId, StatFields.Layer, StatFields.Head, StatFields.LogProbIncrease, StatFields.AttnToImage);

    public static ParquetSchema PositionStats { get; } = new(RunId, ModelFingerprint,
        StatFields.ExampleId, StatFields.Layer, StatFields.Head, StatFields.Position, StatFields.IsImage,
        StatFields.PatchRow, StatFields.PatchCol, StatFields.LogProbIncrease, StatFields.AttnWeight);

    public static ParquetSchema NeuronStats { get; } = new(RunId, ModelFingerprint,
        StatFields.ExampleId, StatFields.Layer, StatFields.Neuron, StatFields.LogProbIncrease, StatFields.Coefficient);

    public static ParquetSchema LogitLens { get; } = new(RunId, ModelFingerprint,
        StatFields.ExampleId, StatFields.Position, StatFields.Rank, StatFields.TokenId, StatFields.Token);

    public static ParquetSchema Rejects { get; } = new(RunId, ModelFingerprint,
        StatFields.Line, StatFields.Reason, StatFields.Raw, StatFields.RawBytes, StatFields.RawSha256);

    /// <summary>The schema of a shard table by name.</summary>
    public static ParquetSchema For(string table) => table switch
    {
        TableNames.Examples => Examples,
        TableNames.LayerStats => LayerStats,
        TableNames.HeadStats => HeadStats,
        TableNames.PositionStats => PositionStats,
        TableNames.NeuronStats => NeuronStats,
        TableNames.LogitLens => LogitLens,
        TableNames.Rejects => Rejects,
        _ => throw new ArgumentException($"unknown table '{table}'", nameof(table)),
    };
}

/// <summary>One row of <c>examples</c> (run_id and model_fingerprint come from the batch).</summary>
/// <param name="Metadata">A JSON document (object) of free-form per-example metadata; "{}" when none.</param>
public sealed record ExampleRow(
    string ExampleId,
    string Task,
    string Prompt,
    int TargetId,
    string TargetToken,
    double TargetProb,
    string? Expected,
    bool? Correct,
    int SeqLen,
    int NumImageTokens,
    string Metadata = "{}");

/// <summary>One row of <c>layer_stats</c>: the log-probability increase of the target caused by one layer's attention or FFN block.</summary>
public sealed record LayerStatRow(string ExampleId, int Layer, string Component, double LogProbIncrease);

/// <summary>One row of <c>head_stats</c>.</summary>
public sealed record HeadStatRow(string ExampleId, int Layer, int Head, double LogProbIncrease, double? AttnToImage = null);

/// <summary>One row of <c>position_stats</c>: one head's contribution through one source position.</summary>
public sealed record PositionStatRow(
    string ExampleId,
    int Layer,
    int Head,
    int Position,
    bool IsImage,
    int? PatchRow,
    int? PatchCol,
    double LogProbIncrease,
    double AttnWeight);

/// <summary>One row of <c>neuron_stats</c>.</summary>
public sealed record NeuronStatRow(string ExampleId, int Layer, int Neuron, double LogProbIncrease, double Coefficient);

/// <summary>One row of <c>logit_lens</c>: the token at <paramref name="Rank"/> (0 = top) of the lens at one position.</summary>
public sealed record LogitLensRow(string ExampleId, int Position, int Rank, int TokenId, string Token);

/// <summary>One row of <c>rejects</c>: an input line the pipeline could not use (the table keeps its start, length and hash).</summary>
public sealed record RejectRow(int Line, string Reason, string Raw);
