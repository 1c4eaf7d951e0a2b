using DuckDB.NET.Data;

namespace LlavaMech.Storage.Tests;

/// <summary>A fresh folder under the system temp dir, removed on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "llavamech-st-" + Guid.NewGuid().ToString("N")[..12]);

    public TempDir() => Directory.CreateDirectory(Path);

    public string File(string rel) => System.IO.Path.Combine(Path, rel);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Runs SQL in DuckDB and returns all rows.</summary>
internal static class Duck
{
    private static readonly object Gate = new();
    private static DuckDBConnection? _db;

    /// <summary>Runs SQL on one shared in-memory database (opening DuckDB per query is slow), one query at a time.</summary>
    public static List<object?[]> Rows(string sql)
    {
        lock (Gate)
        {
            if (_db is null)
            {
                _db = new DuckDBConnection("DataSource=:memory:");
                _db.Open();
            }
            return DuckDbSql.Rows(_db, sql);
        }
    }

    public static T Scalar<T>(string sql)
    {
        object v = Rows(sql)[0][0] ?? throw new InvalidOperationException("NULL result of " + sql);
        if (v is System.Numerics.BigInteger big) v = (long)big;   // DuckDB's HUGEINT (e.g. sum of INTEGER)
        return (T)Convert.ChangeType(v, typeof(T), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>SQL literal for a glob or path.</summary>
    public static string Q(string s) => "'" + s.Replace("'", "''") + "'";

    /// <summary>The rows of &lt;root&gt;/&lt;table&gt;/*.parquet that a globbing reader sees (0 when no file matches).</summary>
    public static long GlobCount(string root, string table)
    {
        string dir = System.IO.Path.Combine(root, table);
        if (!Directory.Exists(dir) || Directory.GetFiles(dir, "*.parquet").Length == 0) return 0;
        return Scalar<long>($"SELECT count(*) FROM read_parquet({Q(System.IO.Path.Combine(dir, "*.parquet"))})");
    }
}

/// <summary>Deterministic shard contents: known example ids and values per shard.</summary>
internal static class Sample
{
    public const string Run = "run-1";
    public const string Model = "fp-abc";
    public const int Layers = 3, Heads = 4;

    public static string ExampleId(int shard, int i) => $"s{shard}-e{i}";

    /// <summary>A shard of <paramref name="examples"/> examples with every table filled.</summary>
    public static ShardTables Shard(int shard, int examples, string run = Run, string model = Model, double offset = 0)
    {
        var t = StatisticCatalog.NewShard(run, model);
        for (int i = 0; i < examples; i++)
        {
            string id = ExampleId(shard, i);
            t.Add(new ExampleRow(id, i % 2 == 0 ? "color" : "count", $"What is shown? #{i}", 100 + i, "red",
                0.5 + 0.01 * i, i % 3 == 0 ? null : "red", i % 3 == 0 ? null : i % 3 == 1, 600 + i, 576, $$"""{"shard":{{shard}},"i":{{i}}}"""));
            var attn = new double[Layers];
            var ffn = new double[Layers];
            for (int l = 0; l < Layers; l++) { attn[l] = offset + l + 0.1 * i; ffn[l] = offset - l; }
            for (int l = 0; l < Layers; l++) { t.Add(new LayerStatRow(id, l, Components.Attention, attn[l])); t.Add(new LayerStatRow(id, l, Components.Ffn, ffn[l])); }
            var heads = new float[Layers * Heads];
            for (int h = 0; h < heads.Length; h++) heads[h] = (float)(offset + h * 0.25 + i);
            for (int h = 0; h < heads.Length; h++) t.Add(new HeadStatRow(id, h / Heads, h % Heads, heads[h]));
            t.Add(new PositionStatRow(id, 1, 2, 5, true, "base", 0, 1, 0.75, 0.125));
            t.Add(new PositionStatRow(id, 1, 2, 600, false, null, null, null, -0.5, 0.25));
            t.Add(new NeuronStatRow(id, 2, 1234 + i, 1.5, -0.5));
            t.Add(new LogitLensRow(id, 5, "base", 0, 4, 0, 42, "▁red"));
            t.Add(new LogitLensRow(id, 5, "base", 0, 4, 1, 43, "‘q’"));
        }
        t.Add(RejectRow.Of(shard * 100 + 1, "missing image", "{\"id\": 1}"));
        return t;
    }

    /// <summary>Rows per table of <see cref="Shard"/>.</summary>
    public static Dictionary<string, long> RowCounts(int examples) => new()
    {
        [TableNames.Examples] = examples,
        [TableNames.LayerStats] = examples * Layers * 2,
        [TableNames.HeadStats] = examples * Layers * Heads,
        [TableNames.PositionStats] = examples * 2,
        [TableNames.NeuronStats] = examples,
        [TableNames.LogitLens] = examples * 2,
        ["image_part_shares"] = 0,
        ["resid_norms"] = 0,
        ["causal_effects"] = 0,
        ["knockout_effects"] = 0,
        [TableNames.Rejects] = 1,
    };
}
