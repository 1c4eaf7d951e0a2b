using System.Reflection;
using System.Text;
using Parquet;
using Parquet.Schema;

namespace LlavaMech.Storage;

/// <summary>
/// Declares a row type as a Parquet table: the record's properties, in order, are its columns after <c>run_id</c> and
/// <c>model_fingerprint</c>. Column names are the property names in snake_case (<c>LogProbIncrease</c> ->
/// <c>log_prob_increase</c>); C# types give the Parquet types (string -> UTF8 BYTE_ARRAY, int -> INT32, long -> INT64,
/// double -> DOUBLE, bool -> BOOLEAN), and nullable annotations (<c>string?</c>, <c>int?</c>) give OPTIONAL columns.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class TableAttribute(string name) : Attribute
{
    public string Name { get; } = name;
}

/// <summary>A row that checks (and may normalize) itself before it is added to a table.</summary>
public interface ITableRow<TSelf> where TSelf : class
{
    /// <summary>The row as stored, or an <see cref="ArgumentException"/> naming what is wrong.</summary>
    TSelf Checked();
}

/// <summary>
/// One table, derived once from its row type: name, Parquet schema and one compiled getter per column. Obtain it with
/// <see cref="Of{TRow}"/> (cached per type).
/// </summary>
public abstract class TableDefinition
{
    private protected TableDefinition(string name, ParquetSchema schema, ParquetSchema rowSchema, Type rowType)
        => (Name, Schema, RowSchema, RowType) = (name, schema, rowSchema, rowType);

    /// <summary>The table's folder name under the output location.</summary>
    public string Name { get; }

    /// <summary>run_id, model_fingerprint, then one field per row property.</summary>
    public ParquetSchema Schema { get; }

    /// <summary>The row properties' fields alone (a standalone file of <see cref="RowFile"/>).</summary>
    public ParquetSchema RowSchema { get; }

    public Type RowType { get; }

    /// <summary>An empty batch of this table's rows.</summary>
    public abstract TableBatch NewBatch(string runId, string modelFingerprint);

    public static TableDefinition<TRow> Of<TRow>() where TRow : class => TableDefinition<TRow>.Instance;

    public override string ToString() => Name;

    internal static readonly DataField<string> RunId = new("run_id", false);
    internal static readonly DataField<string> ModelFingerprint = new("model_fingerprint", false);

    /// <summary><c>LogProbIncrease</c> -> <c>log_prob_increase</c>, <c>RawSha256</c> -> <c>raw_sha256</c>.</summary>
    public static string SnakeCase(string name)
    {
        var sb = new StringBuilder(name.Length + 8);
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c))
            {
                if (i > 0 && (char.IsLower(name[i - 1]) || char.IsDigit(name[i - 1]))) sb.Append('_');
                sb.Append(char.ToLowerInvariant(c));
            }
            else sb.Append(c);
        }
        return sb.ToString();
    }
}

/// <inheritdoc cref="TableDefinition"/>
public sealed class TableDefinition<TRow> : TableDefinition where TRow : class
{
    internal static readonly TableDefinition<TRow> Instance = Build();

    private readonly RowColumn<TRow>[] _columns;
    private readonly Func<TRow, TRow>? _check;

    private TableDefinition(string name, ParquetSchema schema, RowColumn<TRow>[] columns, Func<TRow, TRow>? check)
        : base(name, schema, new ParquetSchema(columns.Select(c => (Field)c.Field).ToArray()), typeof(TRow))
    {
        _columns = columns;
        _check = check;
    }

    public override TableBatch NewBatch(string runId, string modelFingerprint) => new RowBatch<TRow>(this, runId, modelFingerprint);

    /// <summary>The row as it will be stored (its own <see cref="ITableRow{TSelf}.Checked"/>, if it has one).</summary>
    internal TRow Check(TRow row) => _check is null ? row : _check(row);

    internal IReadOnlyList<RowColumn<TRow>> Columns => _columns;

    private static TableDefinition<TRow> Build()
    {
        var type = typeof(TRow);
        var name = type.GetCustomAttribute<TableAttribute>()?.Name
            ?? throw new InvalidOperationException($"{type.Name} has no [Table(\"name\")] attribute: it is not a table row type");
        var nullability = new NullabilityInfoContext();
        var columns = new List<RowColumn<TRow>>();
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetMethod is not null && p.DeclaringType == type))
        {
            if (p.Name == "EqualityContract") continue;
            string column = TableDefinition.SnakeCase(p.Name);
            var t = p.PropertyType;
            var under = Nullable.GetUnderlyingType(t);
            RowColumn<TRow> c;
            if (t == typeof(string))
                c = new StringColumn<TRow>(new DataField<string>(column, nullability.Create(p).ReadState == NullabilityState.Nullable), Getter<string>(p));
            else if (under is not null)
                c = (RowColumn<TRow>)Activator.CreateInstance(typeof(NullableColumn<,>).MakeGenericType(type, under), column, p.GetMethod!)!;
            else if (t == typeof(int) || t == typeof(long) || t == typeof(double) || t == typeof(bool) || t == typeof(float))
                c = (RowColumn<TRow>)Activator.CreateInstance(typeof(StructColumn<,>).MakeGenericType(type, t), column, p.GetMethod!)!;
            else
                throw new InvalidOperationException($"{type.Name}.{p.Name}: type {t.Name} has no plain Parquet column type (use string, int, long, double, bool or their nullable forms)");
            columns.Add(c);
        }
        // Declaration order of the primary constructor = the record's column order.
        var order = type.GetConstructors().OrderByDescending(k => k.GetParameters().Length).First().GetParameters()
            .Select((prm, i) => (TableDefinition.SnakeCase(prm.Name!), i)).ToDictionary(x => x.Item1, x => x.i);
        columns.Sort((a, b) => order.GetValueOrDefault(a.Field.Name, int.MaxValue).CompareTo(order.GetValueOrDefault(b.Field.Name, int.MaxValue)));
        var schema = new ParquetSchema(new Field[] { RunId, ModelFingerprint }.Concat(columns.Select(c => c.Field)).ToArray());
        Func<TRow, TRow>? check = typeof(ITableRow<TRow>).IsAssignableFrom(type) ? r => ((ITableRow<TRow>)r).Checked() : null;
        return new TableDefinition<TRow>(name, schema, columns.ToArray(), check);
    }

    private static Func<TRow, T> Getter<T>(PropertyInfo p) => (Func<TRow, T>)Delegate.CreateDelegate(typeof(Func<TRow, T>), p.GetMethod!);
}

/// <summary>One column of a row type: its field and how to write a slice of rows.</summary>
internal abstract class RowColumn<TRow>
{
    public abstract DataField Field { get; }
    public abstract Task WriteAsync(ParquetRowGroupWriter rg, List<TRow> rows, int start, int count, CancellationToken ct);
}

internal sealed class StringColumn<TRow>(DataField<string> dataField, Func<TRow, string> get) : RowColumn<TRow>
{
    public override DataField Field => dataField;

    public override Task WriteAsync(ParquetRowGroupWriter rg, List<TRow> rows, int start, int count, CancellationToken ct)
    {
        var values = new string[count];
        for (int i = 0; i < count; i++) values[i] = get(rows[start + i]);
        return rg.WriteAsync(dataField, (IReadOnlyCollection<string>)values);
    }
}

internal sealed class StructColumn<TRow, T> : RowColumn<TRow> where T : struct
{
    private readonly DataField<T> _field;
    private readonly Func<TRow, T> _get;

    public StructColumn(string name, MethodInfo getter)
    {
        _field = new DataField<T>(name, false);
        _get = (Func<TRow, T>)Delegate.CreateDelegate(typeof(Func<TRow, T>), getter);
    }

    public override DataField Field => _field;

    public override Task WriteAsync(ParquetRowGroupWriter rg, List<TRow> rows, int start, int count, CancellationToken ct)
    {
        var values = new T[count];
        for (int i = 0; i < count; i++) values[i] = _get(rows[start + i]);
        return rg.WriteAsync(_field, new ReadOnlyMemory<T>(values), null, null, ct);
    }
}

internal sealed class NullableColumn<TRow, T> : RowColumn<TRow> where T : struct
{
    private readonly DataField<T?> _field;
    private readonly Func<TRow, T?> _get;

    public NullableColumn(string name, MethodInfo getter)
    {
        _field = new DataField<T?>(name, true);
        _get = (Func<TRow, T?>)Delegate.CreateDelegate(typeof(Func<TRow, T?>), getter);
    }

    public override DataField Field => _field;

    public override Task WriteAsync(ParquetRowGroupWriter rg, List<TRow> rows, int start, int count, CancellationToken ct)
    {
        var values = new T?[count];
        for (int i = 0; i < count; i++) values[i] = _get(rows[start + i]);
        return rg.WriteAsync<T>(_field, new ReadOnlyMemory<T?>(values), null, null, ct);
    }
}

/// <summary>Rows of one table for one shard, written to Parquet column by column. Not thread-safe.</summary>
public sealed class RowBatch<TRow> : TableBatch where TRow : class
{
    private readonly TableDefinition<TRow> _table;
    private readonly List<TRow> _rows = new();

    internal RowBatch(TableDefinition<TRow> table, string runId, string modelFingerprint) : base(table, runId, modelFingerprint)
    {
        _table = table;
    }

    public RowBatch(string runId, string modelFingerprint) : this(TableDefinition<TRow>.Instance, runId, modelFingerprint) { }

    public override int RowCount => _rows.Count;

    /// <summary>The rows added so far, as stored.</summary>
    public IReadOnlyList<TRow> Rows => _rows;

    /// <summary>Adds one row after its own check (<see cref="ITableRow{TSelf}"/>): a bad row throws and adds nothing.</summary>
    public void Add(TRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        _rows.Add(_table.Check(row));
    }

    public void AddRange(IEnumerable<TRow> rows)
    {
        foreach (var r in rows) Add(r);
    }

    internal override void AddObject(object row) => Add((TRow)row);

    public override void Clear() => _rows.Clear();

    private protected override async Task WriteColumnsAsync(ParquetRowGroupWriter rg, int start, int count, CancellationToken ct)
    {
        foreach (var c in _table.Columns)
            await c.WriteAsync(rg, _rows, start, count, ct).ConfigureAwait(false);
    }
}

/// <summary>Why a row is refused, for <see cref="ITableRow{TSelf}.Checked"/> implementations.</summary>
public static class RowChecks
{
    public static string NonEmpty(string? value, string column) =>
        string.IsNullOrEmpty(value) ? throw new ArgumentException($"{column} must be a non-empty string", column) : value;
}

/// <summary>
/// A standalone Parquet file of rows of one row type (a study's or a diff's table, no run columns):
/// <c>&lt;dir&gt;/&lt;table&gt;.parquet</c>, written to a temporary name and renamed, so a reader never sees half a file.
/// </summary>
public static class RowFile
{
    public static async Task<string> WriteAsync<TRow>(IEnumerable<TRow> rows, string dir, CancellationToken ct = default) where TRow : class
    {
        var table = TableDefinition.Of<TRow>();
        var list = rows.Select(table.Check).ToList();
        string path = Path.Combine(dir, table.Name + ".parquet"), tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            await using (var stream = File.Create(tmp))
            {
                await using var writer = await ParquetWriter.CreateAsync(table.RowSchema, stream, new ParquetOptions { CompressionMethod = CompressionMethod.Snappy }, false, ct).ConfigureAwait(false);
                using var group = writer.CreateRowGroup();
                foreach (var c in table.Columns) await c.WriteAsync(group, list, 0, list.Count, ct).ConfigureAwait(false);
            }
            File.Move(tmp, path, overwrite: true);
            return path;
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static string Write<TRow>(IEnumerable<TRow> rows, string dir) where TRow : class => WriteAsync(rows, dir).GetAwaiter().GetResult();
}
