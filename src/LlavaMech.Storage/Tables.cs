using System.Text.Json;

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
    public const string CausalEffects = "causal_effects";
    public const string KnockoutEffects = "knockout_effects";
    /// <summary>LLaVA-NeXT only: per example and head, the shares of base tile, grid and newlines (empty for other families).</summary>
    public const string ImagePartShares = "image_part_shares";
    public const string Rejects = "rejects";
    public const string HeadSummary = "head_summary";
    public const string LayerSummary = "layer_summary";

    /// <summary>The derived tables that <see cref="Aggregates"/> writes (one file each, rewritten on every run).</summary>
    public static IReadOnlyList<string> SummaryTables { get; } = [HeadSummary, LayerSummary];

    /// <summary>Whether <paramref name="table"/> can be a table folder: lower-case letters, digits and '_', starting with a letter.</summary>
    public static bool IsValidName(string table) =>
        table.Length is > 0 and <= 64 && char.IsAsciiLetterLower(table[0]) && table.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_');
}

/// <summary>Values of <c>causal_effects.selection</c> (how the ablated heads were chosen), in table order.</summary>
public static class HeadSelections
{
    public const string LogIncrease = "log_increase";
    public const string Attention = "attention";
    public const string Random = "random";

    public static IReadOnlyList<string> All { get; } = [LogIncrease, Attention, Random];

    /// <summary>Sort key: the position in <see cref="All"/> (others after them).</summary>
    public static int Order(string selection) => All.ToList().IndexOf(selection) is var i && i >= 0 ? i : All.Count;
}

/// <summary>Values of <c>layer_stats.component</c>.</summary>
public static class Components
{
    public const string Attention = "attn";
    public const string Ffn = "ffn";

    public static bool IsValid(string component) => component is Attention or Ffn;
}

/// <summary>One row of <c>examples</c>: one analysed example (run_id and model_fingerprint come from the batch).</summary>
/// <param name="Metadata">A JSON document (object) of free-form per-example metadata; "{}" when none.</param>
[Table(TableNames.Examples)]
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
    string Metadata = "{}") : ITableRow<ExampleRow>
{
    /// <summary>A non-empty id, non-null texts, and metadata that is a JSON object (blank becomes "{}").</summary>
    public ExampleRow Checked()
    {
        RowChecks.NonEmpty(ExampleId, nameof(ExampleId));
        if (Task is null || Prompt is null || TargetToken is null) throw new ArgumentException($"example '{ExampleId}': task, prompt and target token must not be null");
        string metadata = string.IsNullOrWhiteSpace(Metadata) ? "{}" : Metadata;
        try
        {
            using var doc = JsonDocument.Parse(metadata);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ArgumentException($"metadata of example '{ExampleId}' must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"metadata of example '{ExampleId}' is not valid JSON: {e.Message}", e);
        }
        return ReferenceEquals(metadata, Metadata) ? this : this with { Metadata = metadata };
    }

    /// <summary>Serializes <paramref name="metadata"/> to a JSON object string for <see cref="Metadata"/>.</summary>
    /// <remarks>Values: null, string, bool, integer and floating-point numbers; anything else is written as its invariant string.</remarks>
    public static string Json(IReadOnlyDictionary<string, object?> metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            foreach (var (k, v) in metadata)
            {
                w.WritePropertyName(k);
                switch (v)
                {
                    case null: w.WriteNullValue(); break;
                    case string s: w.WriteStringValue(s); break;
                    case bool b: w.WriteBooleanValue(b); break;
                    case int or long or short or sbyte or byte or ushort or uint:
                        w.WriteNumberValue(Convert.ToInt64(v, System.Globalization.CultureInfo.InvariantCulture)); break;
                    case ulong u: w.WriteNumberValue(u); break;
                    case float f when float.IsFinite(f): w.WriteNumberValue(f); break;
                    case double d when double.IsFinite(d): w.WriteNumberValue(d); break;
                    case decimal m: w.WriteNumberValue(m); break;
                    case IFormattable fmt: w.WriteStringValue(fmt.ToString(null, System.Globalization.CultureInfo.InvariantCulture)); break;
                    default: w.WriteStringValue(v.ToString()); break;
                }
            }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }
}

/// <summary>
/// One row of <c>rejects</c>: an input line the pipeline could not use. A line is stored as its first
/// <see cref="RawPrefixChars"/> characters with the whole line's length in bytes and SHA-256, so one huge bad line cannot
/// make a huge table; a reason is cut at <see cref="ReasonChars"/>.
/// </summary>
[Table(TableNames.Rejects)]
public sealed record RejectRow(int Line, string Reason, string Raw, long RawBytes, string RawSha256) : ITableRow<RejectRow>
{
    /// <summary>Characters of a rejected line kept in <c>raw</c>.</summary>
    public const int RawPrefixChars = 256;

    /// <summary>Characters of a reason kept in <c>reason</c> (a reason may quote a value of the line).</summary>
    public const int ReasonChars = 1024;

    /// <summary>A line held whole: its length and hash are computed here.</summary>
    public static RejectRow Of(int line, string reason, string raw)
    {
        raw ??= "";
        var bytes = System.Text.Encoding.UTF8.GetBytes(raw);
        return new RejectRow(line, reason, raw, bytes.Length, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)));
    }

    public RejectRow Checked()
    {
        ArgumentNullException.ThrowIfNull(Reason);
        string reason = Cut(Reason, ReasonChars), raw = Cut(Raw ?? "", RawPrefixChars);
        return reason.Length == Reason.Length && ReferenceEquals(raw, Raw) && RawSha256 is not null
            ? this
            : this with { Reason = reason, Raw = raw, RawSha256 = RawSha256 ?? "" };
    }

    /// <summary>The first <paramref name="chars"/> characters, not splitting a surrogate pair.</summary>
    internal static string Cut(string s, int chars)
    {
        if (s.Length <= chars) return s;
        int n = char.IsHighSurrogate(s[chars - 1]) ? chars - 1 : chars;
        return s[..n];
    }
}

/// <summary>
/// The image-token place columns, declared once for every table whose rows describe sequence positions
/// (<c>position_stats</c>, <c>logit_lens</c>): the part of the image a position belongs to and its row and column in that
/// part's grid. LLaVA-1.5: every patch is <c>base</c> (its one grid), the class token <c>cls</c> (no row, column);
/// LLaVA-NeXT: <c>base</c> (the downscaled whole image, p x p), <c>grid</c> (the unpadded high-resolution grid) or
/// <c>newline</c> (row = the grid row it ends, column = the grid's width). All three are null at text positions.
/// </summary>
public interface IImagePlaceColumns
{
    /// <summary><see cref="ImageParts"/>: base, grid, newline or cls; null for a text position.</summary>
    string? ImagePart { get; }
    /// <summary>Row in the part's grid.</summary>
    int? PatchRow { get; }
    /// <summary>Column in the part's grid.</summary>
    int? PatchCol { get; }
}

/// <summary>The values of <see cref="IImagePlaceColumns.ImagePart"/>.</summary>
public static class ImageParts
{
    public const string Base = "base", Grid = "grid", Newline = "newline", Cls = "cls";
}
