using DuckDB.NET.Data;

namespace LlavaMech.Storage;

/// <summary>
/// The few synchronous DuckDB calls the readers of the tables make (aggregates, run diffs, tests that read the
/// Parquet back): a statement, all rows as boxed values (DBNull as null), one value.
/// </summary>
public static class DuckDbSql
{
    public static void Exec(DuckDBConnection db, string sql)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    public static List<object?[]> Rows(DuckDBConnection db, string sql, params (string Name, object Value)[] args)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in args) cmd.Parameters.Add(new DuckDBParameter(name, value));
        using var r = cmd.ExecuteReader();
        var rows = new List<object?[]>();
        while (r.Read())
        {
            var row = new object?[r.FieldCount];
            for (int i = 0; i < row.Length; i++) row[i] = r.IsDBNull(i) ? null : r.GetValue(i);
            rows.Add(row);
        }
        return rows;
    }

    /// <summary>The first column of the first row, converted to <typeparamref name="T"/>.</summary>
    public static T Scalar<T>(DuckDBConnection db, string sql)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        return (T)Convert.ChangeType(cmd.ExecuteScalar()!, typeof(T), System.Globalization.CultureInfo.InvariantCulture);
    }
}
