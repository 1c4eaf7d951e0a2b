using System.Text.Json;
using Parquet;
using Parquet.Schema;
using F = LlavaMech.Storage.TableSchemas.StatFields;
using E = LlavaMech.Storage.TableSchemas.ExampleFields;

namespace LlavaMech.Storage;

/// <summary>
/// Column-oriented rows of one table for one shard: every column is a growable array, written to Parquet without
/// per-row objects. All rows of a batch share the batch's <see cref="RunId"/> and <see cref="ModelFingerprint"/>
/// (written as ordinary, dictionary-encoded columns). Not thread-safe.
/// </summary>
public abstract class TableBatch
{
    /// <summary>Rows per Parquet row group; larger batches are written as several row groups.</summary>
    public const int RowGroupRows = 1 << 20;

    protected TableBatch(string runId, string modelFingerprint)
    {
        RunId = RequireText(runId, nameof(runId));
        ModelFingerprint = RequireText(modelFingerprint, nameof(modelFingerprint));
    }

    public string RunId { get; }
    public string ModelFingerprint { get; }

    /// <summary>The table name (<see cref="TableNames"/>).</summary>
    public abstract string Table { get; }

    public abstract int RowCount { get; }

    public ParquetSchema Schema => TableSchemas.For(Table);

    /// <summary>Removes all rows (keeps the allocated arrays).</summary>
    public abstract void Clear();

    private protected abstract Task WriteColumnsAsync(ParquetRowGroupWriter rg, int start, int count, CancellationToken ct);

    /// <summary>Writes the batch as one Parquet file (Snappy, row groups of at most <see cref="RowGroupRows"/>) to a seekable stream.</summary>
    public async Task WriteParquetAsync(Stream output, CancellationToken ct = default)
    {
        var options = new ParquetOptions { CompressionMethod = CompressionMethod.Snappy };
        await using var writer = await ParquetWriter.CreateAsync(Schema, output, options, append: false, ct).ConfigureAwait(false);
        writer.CustomMetadata = new Dictionary<string, string>
        {
            ["llavamech.table"] = Table,
            ["llavamech.schema_version"] = SchemaVersion.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        int rows = RowCount;
        for (int start = 0; start < rows; start += RowGroupRows)   // an empty batch is a file with no row groups
        {
            int count = Math.Min(RowGroupRows, rows - start);
            using var rg = writer.CreateRowGroup();
            await rg.WriteAsync(TableSchemas.RunId, Const(RunId, count)).ConfigureAwait(false);
            await rg.WriteAsync(TableSchemas.ModelFingerprint, Const(ModelFingerprint, count)).ConfigureAwait(false);
            await WriteColumnsAsync(rg, start, count, ct).ConfigureAwait(false);
            rg.CompleteValidate();
        }
    }

    /// <summary>Writes the batch as one Parquet file at <paramref name="path"/> (created or replaced).</summary>
    public async Task WriteParquetAsync(string path, CancellationToken ct = default)
    {
        await using var fs = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16, useAsync: true);
        await WriteParquetAsync(fs, ct).ConfigureAwait(false);
        await fs.FlushAsync(ct).ConfigureAwait(false);
        fs.Flush(flushToDisk: true);
    }

    /// <summary>Version of the table layout, stored in each file's key-value metadata.</summary>
    public const int SchemaVersion = 1;

    private static string[] Const(string value, int count)
    {
        var a = new string[count];
        Array.Fill(a, value);
        return a;
    }

    private protected static string RequireText(string? value, string name) =>
        string.IsNullOrEmpty(value) ? throw new ArgumentException($"{name} must be a non-empty string", name) : value;

    private protected static Task Write(ParquetRowGroupWriter rg, DataField<string> f, Column<string?> c, int start, int count) =>
        rg.WriteAsync(f, (IReadOnlyCollection<string>)c.Segment(start, count)!);

    private protected static Task Write<T>(ParquetRowGroupWriter rg, DataField<T> f, Column<T> c, int start, int count, CancellationToken ct)
        where T : struct =>
        rg.WriteAsync(f, c.Memory(start, count), null, null, ct);

    private protected static Task Write<T>(ParquetRowGroupWriter rg, DataField<T?> f, Column<T?> c, int start, int count, CancellationToken ct)
        where T : struct =>
        rg.WriteAsync<T>(f, c.Memory(start, count), null, null, ct);

    private protected static void CheckLength(int expected, int actual, string name)
    {
        if (actual != expected)
            throw new ArgumentException($"{name} has {actual} values, expected {expected}", name);
    }
}

/// <summary>A growable array backing one column.</summary>
internal sealed class Column<T>
{
    private T[] _items = new T[16];

    public int Count { get; private set; }

    public T this[int index] => index < Count ? _items[index] : throw new ArgumentOutOfRangeException(nameof(index));

    public void Add(T value)
    {
        if (Count == _items.Length)
            Array.Resize(ref _items, checked(_items.Length * 2));
        _items[Count++] = value;
    }

    public void Reserve(int extra)
    {
        long need = (long)Count + extra;
        if (need > _items.Length)
            Array.Resize(ref _items, (int)Math.Min(Array.MaxLength, Math.Max(need, _items.Length * 2L)));
    }

    public void Clear()
    {
        if (RuntimeHelpersIsReference)
            Array.Clear(_items, 0, Count);
        Count = 0;
    }

    private static readonly bool RuntimeHelpersIsReference = System.Runtime.CompilerServices.RuntimeHelpers.IsReferenceOrContainsReferences<T>();

    public ReadOnlyMemory<T> Memory(int start, int count) => new(_items, start, count);

    public ArraySegment<T> Segment(int start, int count) => new(_items, start, count);
}

/// <summary>Rows of <c>examples</c>.</summary>
public sealed class ExamplesBatch(string runId, string modelFingerprint) : TableBatch(runId, modelFingerprint)
{
    private readonly Column<string?> _exampleId = new(), _task = new(), _prompt = new(), _targetToken = new(),
        _expected = new(), _metadata = new();
    private readonly Column<int> _targetId = new(), _seqLen = new(), _numImageTokens = new();
    private readonly Column<double> _targetProb = new();
    private readonly Column<bool?> _correct = new();

    public override string Table => TableNames.Examples;
    public override int RowCount => _exampleId.Count;

    /// <summary>Adds one example. <see cref="ExampleRow.Metadata"/> must be a JSON object ("{}" when empty).</summary>
    public void Add(ExampleRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        string metadata = string.IsNullOrWhiteSpace(row.Metadata) ? "{}" : row.Metadata;
        ValidateJsonObject(metadata, row.ExampleId);
        _exampleId.Add(RequireText(row.ExampleId, "ExampleId"));
        _task.Add(row.Task ?? throw new ArgumentException("Task is null"));
        _prompt.Add(row.Prompt ?? throw new ArgumentException("Prompt is null"));
        _targetId.Add(row.TargetId);
        _targetToken.Add(row.TargetToken ?? throw new ArgumentException("TargetToken is null"));
        _targetProb.Add(row.TargetProb);
        _expected.Add(row.Expected);
        _correct.Add(row.Correct);
        _seqLen.Add(row.SeqLen);
        _numImageTokens.Add(row.NumImageTokens);
        _metadata.Add(metadata);
    }

    /// <summary>Serializes <paramref name="metadata"/> to a JSON object string for <see cref="ExampleRow.Metadata"/>.</summary>
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

    private static void ValidateJsonObject(string json, string exampleId)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ArgumentException($"metadata of example '{exampleId}' must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"metadata of example '{exampleId}' is not valid JSON: {e.Message}", e);
        }
    }

    public override void Clear()
    {
        foreach (var c in new[] { _exampleId, _task, _prompt, _targetToken, _expected, _metadata }) c.Clear();
        _targetId.Clear(); _seqLen.Clear(); _numImageTokens.Clear(); _targetProb.Clear(); _correct.Clear();
    }

    private protected override async Task WriteColumnsAsync(ParquetRowGroupWriter rg, int s, int n, CancellationToken ct)
    {
        await Write(rg, E.ExampleId, _exampleId, s, n).ConfigureAwait(false);
        await Write(rg, E.Task, _task, s, n).ConfigureAwait(false);
        await Write(rg, E.Prompt, _prompt, s, n).ConfigureAwait(false);
        await Write(rg, E.TargetId, _targetId, s, n, ct).ConfigureAwait(false);
        await Write(rg, E.TargetToken, _targetToken, s, n).ConfigureAwait(false);
        await Write(rg, E.TargetProb, _targetProb, s, n, ct).ConfigureAwait(false);
        await Write(rg, E.Expected, _expected, s, n).ConfigureAwait(false);
        await Write(rg, E.Correct, _correct, s, n, ct).ConfigureAwait(false);
        await Write(rg, E.SeqLen, _seqLen, s, n, ct).ConfigureAwait(false);
        await Write(rg, E.NumImageTokens, _numImageTokens, s, n, ct).ConfigureAwait(false);
        await Write(rg, E.Metadata, _metadata, s, n).ConfigureAwait(false);
    }
}

/// <summary>Rows of <c>layer_stats</c>.</summary>
public sealed class LayerStatsBatch(string runId, string modelFingerprint) : TableBatch(runId, modelFingerprint)
{
    private readonly Column<string?> _exampleId = new(), _component = new();
    private readonly Column<int> _layer = new();
    private readonly Column<double> _lpi = new();

    public override string Table => TableNames.LayerStats;
    public override int RowCount => _exampleId.Count;

    public void Add(LayerStatRow row) => Add(row.ExampleId, row.Layer, row.Component, row.LogProbIncrease);

    public void Add(string exampleId, int layer, string component, double logProbIncrease)
    {
        if (!Components.IsValid(component))
            throw new ArgumentException($"component must be '{Components.Attention}' or '{Components.Ffn}', not '{component}'", nameof(component));
        _exampleId.Add(RequireText(exampleId, nameof(exampleId)));
        _layer.Add(layer);
        _component.Add(component);
        _lpi.Add(logProbIncrease);
    }

    /// <summary>Adds 2·L rows for one example: per layer l (0-based), its attention then its FFN increase.</summary>
    public void AddExample(string exampleId, ReadOnlySpan<double> attention, ReadOnlySpan<double> ffn)
    {
        CheckLength(attention.Length, ffn.Length, nameof(ffn));
        Reserve(2 * attention.Length);
        for (int l = 0; l < attention.Length; l++)
        {
            Add(exampleId, l, Components.Attention, attention[l]);
            Add(exampleId, l, Components.Ffn, ffn[l]);
        }
    }

    /// <inheritdoc cref="AddExample(string, ReadOnlySpan{double}, ReadOnlySpan{double})"/>
    public void AddExample(string exampleId, ReadOnlySpan<float> attention, ReadOnlySpan<float> ffn)
    {
        CheckLength(attention.Length, ffn.Length, nameof(ffn));
        Reserve(2 * attention.Length);
        for (int l = 0; l < attention.Length; l++)
        {
            Add(exampleId, l, Components.Attention, attention[l]);
            Add(exampleId, l, Components.Ffn, ffn[l]);
        }
    }

    private void Reserve(int n) { _exampleId.Reserve(n); _component.Reserve(n); _layer.Reserve(n); _lpi.Reserve(n); }

    public override void Clear() { _exampleId.Clear(); _component.Clear(); _layer.Clear(); _lpi.Clear(); }

    private protected override async Task WriteColumnsAsync(ParquetRowGroupWriter rg, int s, int n, CancellationToken ct)
    {
        await Write(rg, F.ExampleId, _exampleId, s, n).ConfigureAwait(false);
        await Write(rg, F.Layer, _layer, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Component, _component, s, n).ConfigureAwait(false);
        await Write(rg, F.LogProbIncrease, _lpi, s, n, ct).ConfigureAwait(false);
    }
}

/// <summary>Rows of <c>head_stats</c>.</summary>
public sealed class HeadStatsBatch(string runId, string modelFingerprint) : TableBatch(runId, modelFingerprint)
{
    private readonly Column<string?> _exampleId = new();
    private readonly Column<int> _layer = new(), _head = new();
    private readonly Column<double> _lpi = new();
    private readonly Column<double?> _attnToImage = new();

    public override string Table => TableNames.HeadStats;
    public override int RowCount => _exampleId.Count;

    public void Add(HeadStatRow row) => Add(row.ExampleId, row.Layer, row.Head, row.LogProbIncrease, row.AttnToImage);

    public void Add(string exampleId, int layer, int head, double logProbIncrease, double? attnToImage = null)
    {
        _exampleId.Add(RequireText(exampleId, nameof(exampleId)));
        _layer.Add(layer);
        _head.Add(head);
        _lpi.Add(logProbIncrease);
        _attnToImage.Add(attnToImage);
    }

    /// <summary>
    /// Adds layers·heads rows for one example from row-major [layers, heads] arrays (as a tensor's data comes out);
    /// <paramref name="attnToImage"/> may be empty (nulls).
    /// </summary>
    public void AddExample(string exampleId, int layers, int heads, ReadOnlySpan<float> logProbIncrease, ReadOnlySpan<float> attnToImage = default)
    {
        int n = layers * heads;
        CheckLength(n, logProbIncrease.Length, nameof(logProbIncrease));
        if (!attnToImage.IsEmpty) CheckLength(n, attnToImage.Length, nameof(attnToImage));
        Reserve(n);
        for (int i = 0; i < n; i++)
            Add(exampleId, i / heads, i % heads, logProbIncrease[i], attnToImage.IsEmpty ? null : attnToImage[i]);
    }

    /// <inheritdoc cref="AddExample(string, int, int, ReadOnlySpan{float}, ReadOnlySpan{float})"/>
    public void AddExample(string exampleId, int layers, int heads, ReadOnlySpan<double> logProbIncrease, ReadOnlySpan<double> attnToImage = default)
    {
        int n = layers * heads;
        CheckLength(n, logProbIncrease.Length, nameof(logProbIncrease));
        if (!attnToImage.IsEmpty) CheckLength(n, attnToImage.Length, nameof(attnToImage));
        Reserve(n);
        for (int i = 0; i < n; i++)
            Add(exampleId, i / heads, i % heads, logProbIncrease[i], attnToImage.IsEmpty ? null : attnToImage[i]);
    }

    private void Reserve(int n) { _exampleId.Reserve(n); _layer.Reserve(n); _head.Reserve(n); _lpi.Reserve(n); _attnToImage.Reserve(n); }

    public override void Clear() { _exampleId.Clear(); _layer.Clear(); _head.Clear(); _lpi.Clear(); _attnToImage.Clear(); }

    private protected override async Task WriteColumnsAsync(ParquetRowGroupWriter rg, int s, int n, CancellationToken ct)
    {
        await Write(rg, F.ExampleId, _exampleId, s, n).ConfigureAwait(false);
        await Write(rg, F.Layer, _layer, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Head, _head, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.LogProbIncrease, _lpi, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.AttnToImage, _attnToImage, s, n, ct).ConfigureAwait(false);
    }
}

/// <summary>Rows of <c>position_stats</c>.</summary>
public sealed class PositionStatsBatch(string runId, string modelFingerprint) : TableBatch(runId, modelFingerprint)
{
    private readonly Column<string?> _exampleId = new();
    private readonly Column<int> _layer = new(), _head = new(), _position = new();
    private readonly Column<bool> _isImage = new();
    private readonly Column<int?> _patchRow = new(), _patchCol = new();
    private readonly Column<double> _lpi = new(), _attnWeight = new();

    public override string Table => TableNames.PositionStats;
    public override int RowCount => _exampleId.Count;

    public void Add(PositionStatRow r) =>
        Add(r.ExampleId, r.Layer, r.Head, r.Position, r.IsImage, r.PatchRow, r.PatchCol, r.LogProbIncrease, r.AttnWeight);

    public void Add(string exampleId, int layer, int head, int position, bool isImage, int? patchRow, int? patchCol,
        double logProbIncrease, double attnWeight)
    {
        _exampleId.Add(RequireText(exampleId, nameof(exampleId)));
        _layer.Add(layer);
        _head.Add(head);
        _position.Add(position);
        _isImage.Add(isImage);
        _patchRow.Add(patchRow);
        _patchCol.Add(patchCol);
        _lpi.Add(logProbIncrease);
        _attnWeight.Add(attnWeight);
    }

    /// <summary>
    /// Adds one row per position of one head. Positions in [<paramref name="firstImagePosition"/>,
    /// firstImagePosition + gridSide²) are image patches with row = i / gridSide, col = i % gridSide; the rest are text
    /// (null patch row/col). <paramref name="positions"/> defaults to 0..n-1.
    /// </summary>
    public void AddHead(string exampleId, int layer, int head, ReadOnlySpan<float> logProbIncrease, ReadOnlySpan<float> attnWeight,
        int firstImagePosition, int gridSide, ReadOnlySpan<int> positions = default)
    {
        CheckLength(logProbIncrease.Length, attnWeight.Length, nameof(attnWeight));
        if (!positions.IsEmpty) CheckLength(logProbIncrease.Length, positions.Length, nameof(positions));
        int numImage = gridSide * gridSide;
        for (int i = 0; i < logProbIncrease.Length; i++)
        {
            int p = positions.IsEmpty ? i : positions[i];
            int k = p - firstImagePosition;
            bool image = k >= 0 && k < numImage;
            Add(exampleId, layer, head, p, image, image ? k / gridSide : null, image ? k % gridSide : null,
                logProbIncrease[i], attnWeight[i]);
        }
    }

    public override void Clear()
    {
        _exampleId.Clear(); _layer.Clear(); _head.Clear(); _position.Clear(); _isImage.Clear();
        _patchRow.Clear(); _patchCol.Clear(); _lpi.Clear(); _attnWeight.Clear();
    }

    private protected override async Task WriteColumnsAsync(ParquetRowGroupWriter rg, int s, int n, CancellationToken ct)
    {
        await Write(rg, F.ExampleId, _exampleId, s, n).ConfigureAwait(false);
        await Write(rg, F.Layer, _layer, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Head, _head, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Position, _position, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.IsImage, _isImage, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.PatchRow, _patchRow, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.PatchCol, _patchCol, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.LogProbIncrease, _lpi, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.AttnWeight, _attnWeight, s, n, ct).ConfigureAwait(false);
    }
}

/// <summary>Rows of <c>neuron_stats</c>.</summary>
public sealed class NeuronStatsBatch(string runId, string modelFingerprint) : TableBatch(runId, modelFingerprint)
{
    private readonly Column<string?> _exampleId = new();
    private readonly Column<int> _layer = new(), _neuron = new();
    private readonly Column<double> _lpi = new(), _coefficient = new();

    public override string Table => TableNames.NeuronStats;
    public override int RowCount => _exampleId.Count;

    public void Add(NeuronStatRow r) => Add(r.ExampleId, r.Layer, r.Neuron, r.LogProbIncrease, r.Coefficient);

    public void Add(string exampleId, int layer, int neuron, double logProbIncrease, double coefficient)
    {
        _exampleId.Add(RequireText(exampleId, nameof(exampleId)));
        _layer.Add(layer);
        _neuron.Add(neuron);
        _lpi.Add(logProbIncrease);
        _coefficient.Add(coefficient);
    }

    /// <summary>Adds one row per (layer, neuron) pair from parallel arrays (e.g. an example's top-k neurons).</summary>
    public void AddExample(string exampleId, ReadOnlySpan<int> layers, ReadOnlySpan<int> neurons,
        ReadOnlySpan<float> logProbIncrease, ReadOnlySpan<float> coefficients)
    {
        CheckLength(layers.Length, neurons.Length, nameof(neurons));
        CheckLength(layers.Length, logProbIncrease.Length, nameof(logProbIncrease));
        CheckLength(layers.Length, coefficients.Length, nameof(coefficients));
        for (int i = 0; i < layers.Length; i++)
            Add(exampleId, layers[i], neurons[i], logProbIncrease[i], coefficients[i]);
    }

    public override void Clear() { _exampleId.Clear(); _layer.Clear(); _neuron.Clear(); _lpi.Clear(); _coefficient.Clear(); }

    private protected override async Task WriteColumnsAsync(ParquetRowGroupWriter rg, int s, int n, CancellationToken ct)
    {
        await Write(rg, F.ExampleId, _exampleId, s, n).ConfigureAwait(false);
        await Write(rg, F.Layer, _layer, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Neuron, _neuron, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.LogProbIncrease, _lpi, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Coefficient, _coefficient, s, n, ct).ConfigureAwait(false);
    }
}

/// <summary>Rows of <c>logit_lens</c>.</summary>
public sealed class LogitLensBatch(string runId, string modelFingerprint) : TableBatch(runId, modelFingerprint)
{
    private readonly Column<string?> _exampleId = new(), _token = new();
    private readonly Column<int> _position = new(), _rank = new(), _tokenId = new();

    public override string Table => TableNames.LogitLens;
    public override int RowCount => _exampleId.Count;

    public void Add(LogitLensRow r) => Add(r.ExampleId, r.Position, r.Rank, r.TokenId, r.Token);

    public void Add(string exampleId, int position, int rank, int tokenId, string token)
    {
        _exampleId.Add(RequireText(exampleId, nameof(exampleId)));
        _position.Add(position);
        _rank.Add(rank);
        _tokenId.Add(tokenId);
        _token.Add(token ?? throw new ArgumentNullException(nameof(token)));
    }

    /// <summary>
    /// Adds positions·k rows from row-major top-k ids [positions.Length, k] (best first); <paramref name="decode"/>
    /// turns an id into its token text.
    /// </summary>
    public void AddExample(string exampleId, ReadOnlySpan<int> positions, int k, ReadOnlySpan<long> topIds, Func<int, string> decode)
    {
        CheckLength(positions.Length * k, topIds.Length, nameof(topIds));
        for (int i = 0; i < positions.Length; i++)
            for (int r = 0; r < k; r++)
            {
                int id = checked((int)topIds[i * k + r]);
                Add(exampleId, positions[i], r, id, decode(id));
            }
    }

    public override void Clear() { _exampleId.Clear(); _token.Clear(); _position.Clear(); _rank.Clear(); _tokenId.Clear(); }

    private protected override async Task WriteColumnsAsync(ParquetRowGroupWriter rg, int s, int n, CancellationToken ct)
    {
        await Write(rg, F.ExampleId, _exampleId, s, n).ConfigureAwait(false);
        await Write(rg, F.Position, _position, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Rank, _rank, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.TokenId, _tokenId, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Token, _token, s, n).ConfigureAwait(false);
    }
}

/// <summary>
/// Rows of <c>rejects</c>. A line is stored as its first <see cref="RawPrefixChars"/> characters with the whole line's
/// length in bytes and SHA-256, so one huge bad line cannot make a huge table; a reason is cut at
/// <see cref="ReasonChars"/>.
/// </summary>
public sealed class RejectsBatch(string runId, string modelFingerprint) : TableBatch(runId, modelFingerprint)
{
    /// <summary>Characters of a rejected line kept in <c>raw</c>.</summary>
    public const int RawPrefixChars = 256;

    /// <summary>Characters of a reason kept in <c>reason</c> (a reason may quote a value of the line).</summary>
    public const int ReasonChars = 1024;

    private readonly Column<int> _line = new();
    private readonly Column<long> _rawBytes = new();
    private readonly Column<string?> _reason = new(), _raw = new(), _rawSha = new();

    public override string Table => TableNames.Rejects;
    public override int RowCount => _line.Count;

    public void Add(RejectRow r) => Add(r.Line, r.Reason, r.Raw);

    /// <summary>Adds a line held whole: its length and hash are computed here.</summary>
    public void Add(int line, string reason, string raw)
    {
        raw ??= "";
        var bytes = System.Text.Encoding.UTF8.GetBytes(raw);
        Add(line, reason, raw, bytes.Length, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)));
    }

    /// <summary>Adds a line of which only the start may be held (<paramref name="rawStart"/>), with the whole line's length and SHA-256.</summary>
    public void Add(int line, string reason, string rawStart, long rawBytes, string rawSha256)
    {
        ArgumentNullException.ThrowIfNull(reason);
        _line.Add(line);
        _reason.Add(Cut(reason, ReasonChars));
        _raw.Add(Cut(rawStart ?? "", RawPrefixChars));
        _rawBytes.Add(rawBytes);
        _rawSha.Add(rawSha256 ?? "");
    }

    /// <summary>The first <paramref name="chars"/> characters, not splitting a surrogate pair.</summary>
    internal static string Cut(string s, int chars)
    {
        if (s.Length <= chars) return s;
        int n = char.IsHighSurrogate(s[chars - 1]) ? chars - 1 : chars;
        return s[..n];
    }

    public override void Clear() { _line.Clear(); _reason.Clear(); _raw.Clear(); _rawBytes.Clear(); _rawSha.Clear(); }

    private protected override async Task WriteColumnsAsync(ParquetRowGroupWriter rg, int s, int n, CancellationToken ct)
    {
        await Write(rg, F.Line, _line, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.Reason, _reason, s, n).ConfigureAwait(false);
        await Write(rg, F.Raw, _raw, s, n).ConfigureAwait(false);
        await Write(rg, F.RawBytes, _rawBytes, s, n, ct).ConfigureAwait(false);
        await Write(rg, F.RawSha256, _rawSha, s, n).ConfigureAwait(false);
    }
}

/// <summary>All seven tables of one shard, sharing one run id and model fingerprint.</summary>
public sealed class ShardTables
{
    public ShardTables(string runId, string modelFingerprint)
    {
        Examples = new(runId, modelFingerprint);
        LayerStats = new(runId, modelFingerprint);
        HeadStats = new(runId, modelFingerprint);
        PositionStats = new(runId, modelFingerprint);
        NeuronStats = new(runId, modelFingerprint);
        LogitLens = new(runId, modelFingerprint);
        Rejects = new(runId, modelFingerprint);
    }

    public string RunId => Examples.RunId;
    public string ModelFingerprint => Examples.ModelFingerprint;

    public ExamplesBatch Examples { get; }
    public LayerStatsBatch LayerStats { get; }
    public HeadStatsBatch HeadStats { get; }
    public PositionStatsBatch PositionStats { get; }
    public NeuronStatsBatch NeuronStats { get; }
    public LogitLensBatch LogitLens { get; }
    public RejectsBatch Rejects { get; }

    /// <summary>The seven batches in <see cref="TableNames.ShardTables"/> order (empty ones included).</summary>
    public IReadOnlyList<TableBatch> All => [Examples, LayerStats, HeadStats, PositionStats, NeuronStats, LogitLens, Rejects];

    public void Clear()
    {
        foreach (var b in All) b.Clear();
    }
}
