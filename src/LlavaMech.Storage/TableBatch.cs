using Parquet;
using Parquet.Schema;

namespace LlavaMech.Storage;

/// <summary>
/// Rows of one table for one shard, written as one Parquet file. All rows of a batch share the batch's
/// <see cref="RunId"/> and <see cref="ModelFingerprint"/> (written as ordinary, dictionary-encoded columns). The rows'
/// own columns come from the table's row type (<see cref="TableDefinition"/>, <see cref="RowBatch{TRow}"/>).
/// </summary>
public abstract class TableBatch
{
    /// <summary>Rows per Parquet row group; larger batches are written as several row groups.</summary>
    public const int RowGroupRows = 1 << 20;

    /// <summary>Version of the table layout, stored in each file's key-value metadata.</summary>
    public const int SchemaVersion = 1;

    private protected TableBatch(TableDefinition definition, string runId, string modelFingerprint)
    {
        Definition = definition;
        RunId = RowChecks.NonEmpty(runId, nameof(runId));
        ModelFingerprint = RowChecks.NonEmpty(modelFingerprint, nameof(modelFingerprint));
    }

    public TableDefinition Definition { get; }
    public string RunId { get; }
    public string ModelFingerprint { get; }

    /// <summary>The table name (its folder under the output).</summary>
    public string Table => Definition.Name;

    public ParquetSchema Schema => Definition.Schema;

    public abstract int RowCount { get; }

    /// <summary>Removes all rows.</summary>
    public abstract void Clear();

    /// <summary>Adds a row of this table's row type (checked like a typed add).</summary>
    internal abstract void AddObject(object row);

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
            await rg.WriteAsync(TableDefinition.RunId, Const(RunId, count)).ConfigureAwait(false);
            await rg.WriteAsync(TableDefinition.ModelFingerprint, Const(ModelFingerprint, count)).ConfigureAwait(false);
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

    private static string[] Const(string value, int count)
    {
        var a = new string[count];
        Array.Fill(a, value);
        return a;
    }
}

/// <summary>
/// The batches of one shard, one per table of <see cref="Tables"/> (the shard's table set, in order), sharing one run id
/// and model fingerprint. Rows are added by type: <c>tables.Add(new HeadStatRow(...))</c>.
/// </summary>
public sealed class ShardTables
{
    private readonly Dictionary<Type, TableBatch> _byType = new();
    private readonly List<TableBatch> _all = new();

    public ShardTables(string runId, string modelFingerprint, IEnumerable<TableDefinition> tables)
    {
        RunId = runId;
        ModelFingerprint = modelFingerprint;
        foreach (var t in tables)
        {
            if (_byType.ContainsKey(t.RowType)) throw new ArgumentException($"table '{t.Name}' is listed twice", nameof(tables));
            var b = t.NewBatch(runId, modelFingerprint);
            _byType[t.RowType] = b;
            _all.Add(b);
        }
    }

    public string RunId { get; }
    public string ModelFingerprint { get; }

    /// <summary>Every batch, in the table set's order (empty ones included).</summary>
    public IReadOnlyList<TableBatch> All => _all;

    /// <summary>The batch of <typeparamref name="TRow"/>'s table.</summary>
    public RowBatch<TRow> Of<TRow>() where TRow : class => (RowBatch<TRow>)BatchOf(typeof(TRow));

    public void Add<TRow>(TRow row) where TRow : class => Of<TRow>().Add(row);

    /// <summary>Adds rows of any of the shard's row types (e.g. the rows one example produced).</summary>
    public void AddRows(IEnumerable<object> rows)
    {
        foreach (var r in rows) BatchOf(r.GetType()).AddObject(r);
    }

    private TableBatch BatchOf(Type rowType) => _byType.TryGetValue(rowType, out var b)
        ? b
        : throw new ArgumentException($"{rowType.Name} is not a row type of this shard's tables ({string.Join(", ", _all.Select(x => x.Table))})");

    public void Clear()
    {
        foreach (var b in _all) b.Clear();
    }
}
