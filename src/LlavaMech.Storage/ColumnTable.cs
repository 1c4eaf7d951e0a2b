using Parquet;
using Parquet.Data;
using Parquet.Schema;

namespace LlavaMech.Storage;

/// <summary>
/// A small column-oriented table written as one Parquet file with plain types (string, int,
/// double, bool, nullable where declared) that pandas, DuckDB and Spark read as they are.
/// </summary>
public sealed class ColumnTable
{
    private readonly List<(DataField Field, Func<ParquetRowGroupWriter, Task> Write)> _columns = new();
    private int _rows = -1;

    public ColumnTable Add(string name, IReadOnlyCollection<string> values)
    {
        var field = new DataField<string>(name);
        IReadOnlyCollection<string> data = values.ToArray();
        return Add(field, data.Count, async g => await g.WriteAsync(field, data));
    }

    public ColumnTable Add<T>(string name, IReadOnlyCollection<T> values) where T : struct
    {
        var field = new DataField<T>(name);
        var data = values.ToArray();
        return Add(field, data.Length, async g => await g.WriteAsync(field, new ReadOnlyMemory<T>(data)));
    }

    public ColumnTable Add<T>(string name, IReadOnlyCollection<T?> values) where T : struct
    {
        var field = new DataField<T?>(name);
        var data = values.ToArray();
        return Add(field, data.Length, async g => await g.WriteAsync(field, new ReadOnlyMemory<T?>(data)));
    }

    private ColumnTable Add(DataField field, int count, Func<ParquetRowGroupWriter, Task> write)
    {
        if (_rows >= 0 && count != _rows) throw new ArgumentException($"column '{field.Name}' has {count} rows, the table {_rows}");
        _rows = count;
        _columns.Add((field, write));
        return this;
    }

    public int Rows => Math.Max(0, _rows);

    /// <summary>Writes to a temporary name, then renames: a reader never sees a half-written file.</summary>
    public async Task WriteAsync(string path)
    {
        var schema = new ParquetSchema(_columns.Select(c => (Field)c.Field).ToArray());
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            await using (var stream = File.Create(tmp))
            {
                await using var writer = await ParquetWriter.CreateAsync(schema, stream);
                using var group = writer.CreateRowGroup();
                foreach (var (_, write) in _columns) await write(group);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public void Write(string path) => WriteAsync(path).GetAwaiter().GetResult();
}
