using System.Diagnostics;

namespace LlavaMech.Storage.Tests;

public class TableWriteTests
{
    private static async Task<string> WriteAsync(TempDir dir, TableBatch batch)
    {
        string path = dir.File(batch.Table + ".parquet");
        await batch.WriteParquetAsync(path);
        return Duck.Q(path);
    }

    [Fact]
    public async Task Examples_round_trip_through_duckdb_with_nulls_and_unicode()
    {
        using var dir = new TempDir();
        var b = new RowBatch<ExampleRow>("run-7", "fp-1");
        b.Add(new ExampleRow("e0", "color", "Wie heißt die Farbe? 色", 3148, "▁red", 0.8125, "red", true, 612, 576, """{"source":"synth","k":[1,2]}"""));
        b.Add(new ExampleRow("e1", "count", "how many?", 29906, "▁two", 0.25, null, null, 600, 576));
        b.Add(new ExampleRow("e2", "count", "", -1, "", 0.0, "three", false, 1, 0, "  "));
        string f = await WriteAsync(dir, b);

        var rows = Duck.Rows($"SELECT run_id, model_fingerprint, example_id, task, prompt, target_id, target_token, target_prob, expected, correct, seq_len, num_image_tokens, metadata FROM read_parquet({f}) ORDER BY example_id");
        Assert.Equal(3, rows.Count);
        Assert.Equal(new object?[] { "run-7", "fp-1", "e0", "color", "Wie heißt die Farbe? 色", 3148, "▁red", 0.8125, "red", true, 612, 576, """{"source":"synth","k":[1,2]}""" }, rows[0]);
        Assert.Equal(new object?[] { "run-7", "fp-1", "e1", "count", "how many?", 29906, "▁two", 0.25, null, null, 600, 576, "{}" }, rows[1]);
        Assert.Equal(new object?[] { "run-7", "fp-1", "e2", "count", "", -1, "", 0.0, "three", false, 1, 0, "{}" }, rows[2]);
        Assert.Equal("synth", Duck.Scalar<string>($"SELECT json_extract_string(metadata, '$.source') FROM read_parquet({f}) WHERE example_id = 'e0'"));
    }

    [Fact]
    public void Examples_reject_bad_metadata_and_empty_ids()
    {
        var b = new RowBatch<ExampleRow>("r", "m");
        Assert.Throws<ArgumentException>(() => b.Add(new ExampleRow("e", "t", "p", 1, "x", 0, null, null, 1, 1, "not json")));
        Assert.Throws<ArgumentException>(() => b.Add(new ExampleRow("e", "t", "p", 1, "x", 0, null, null, 1, 1, "[1]")));
        Assert.Throws<ArgumentException>(() => b.Add(new ExampleRow("", "t", "p", 1, "x", 0, null, null, 1, 1)));
        Assert.Throws<ArgumentException>(() => new RowBatch<ExampleRow>("", "m"));
        Assert.Throws<ArgumentException>(() => new RowBatch<LayerStatRow>("r", "m").Add(new LayerStatRow("e", 0, "mlp", 1.0)));
        Assert.Equal(0, b.RowCount);
    }

    [Fact]
    public async Task Stats_tables_round_trip_with_exact_values()
    {
        using var dir = new TempDir();
        var layers = new RowBatch<LayerStatRow>("r", "m");
        layers.AddRange([new("e0", 0, "attn", 0.5), new("e0", 0, "ffn", 2.0), new("e0", 1, "attn", -1.25), new("e0", 1, "ffn", 0.0)]);
        var heads = new RowBatch<HeadStatRow>("r", "m");
        float[] lpi = [0, 1, 2, 3, 4, 5], share = [0.5f, 0.25f, 0, 1, 0.125f, 0.75f];
        for (int i = 0; i < 6; i++) heads.Add(new HeadStatRow("e0", i / 3, i % 3, lpi[i], share[i]));
        heads.Add(new HeadStatRow("e1", 1, 2, -3.5));
        var positions = new RowBatch<PositionStatRow>("r", "m");
        float[] pl = [1, 2, 3, 4, 5, 6], pw = [0.5f, 0.25f, 0.125f, 0, 0, 0.125f];
        for (int k = 0; k < 6; k++)
        {
            bool image = k is >= 1 and < 5;
            positions.Add(new PositionStatRow("e0", 4, 7, k, image, image ? "base" : null, image ? (k - 1) / 2 : null, image ? (k - 1) % 2 : null, pl[k], pw[k]));
        }
        var neurons = new RowBatch<NeuronStatRow>("r", "m");
        neurons.AddRange([new("e0", 3, 11008, 0.5, 2), new("e0", 3, 7, -0.25, -1)]);
        var lens = new RowBatch<LogitLensRow>("r", "m");
        foreach (var (pos, id) in new[] { (5, 10), (5, 11), (6, 20), (6, 21) }) lens.Add(new LogitLensRow("e0", pos, "base", 0, pos, id % 10, id, $"tok{id}"));
        var rejects = new RowBatch<RejectRow>("r", "m");
        rejects.Add(RejectRow.Of(17, "bad json", "{oops"));

        var l = Duck.Rows($"SELECT example_id, layer, component, log_prob_increase FROM read_parquet({await WriteAsync(dir, layers)})");
        Assert.Equal(new[] { "e0|0|attn|0.5", "e0|0|ffn|2", "e0|1|attn|-1.25", "e0|1|ffn|0" }, l.Select(Join));

        var h = Duck.Rows($"SELECT example_id, layer, head, log_prob_increase, attn_to_image FROM read_parquet({await WriteAsync(dir, heads)})");
        Assert.Equal(new[] { "e0|0|0|0|0.5", "e0|0|1|1|0.25", "e0|0|2|2|0", "e0|1|0|3|1", "e0|1|1|4|0.125", "e0|1|2|5|0.75", "e1|1|2|-3.5|null" },
            h.Select(Join));

        var p = Duck.Rows($"SELECT position, is_image, patch_row, patch_col, log_prob_increase, attn_weight, layer, head FROM read_parquet({await WriteAsync(dir, positions)})");
        Assert.Equal(new[] { "0|False|null|null|1|0.5|4|7", "1|True|0|0|2|0.25|4|7", "2|True|0|1|3|0.125|4|7", "3|True|1|0|4|0|4|7",
            "4|True|1|1|5|0|4|7", "5|False|null|null|6|0.125|4|7" }, p.Select(Join));

        var n = Duck.Rows($"SELECT example_id, layer, neuron, log_prob_increase, coefficient FROM read_parquet({await WriteAsync(dir, neurons)})");
        Assert.Equal(new[] { "e0|3|11008|0.5|2", "e0|3|7|-0.25|-1" }, n.Select(Join));

        var t = Duck.Rows($"SELECT example_id, position, rank, token_id, token FROM read_parquet({await WriteAsync(dir, lens)})");
        Assert.Equal(new[] { "e0|5|0|10|tok10", "e0|5|1|11|tok11", "e0|6|0|20|tok20", "e0|6|1|21|tok21" }, t.Select(Join));

        var r = Duck.Rows($"SELECT run_id, model_fingerprint, line, reason, raw FROM read_parquet({await WriteAsync(dir, rejects)})");
        Assert.Equal(new[] { "r|m|17|bad json|{oops" }, r.Select(Join));
    }

    [Fact]
    public async Task Parquet_files_use_plain_types_and_declared_nullability()
    {
        using var dir = new TempDir();
        var shard = Sample.Shard(0, 3);
        foreach (var b in shard.All)
        {
            string f = await WriteAsync(dir, b);
            var schema = Duck.Rows($"SELECT name, type, repetition_type, converted_type, logical_type FROM parquet_schema({f})").Skip(1).ToList();   // row 0: the root group
            var expected = b.Schema.DataFields;
            Assert.Equal(expected.Select(x => x.Name), schema.Select(s => (string)s[0]!));
            foreach (var (field, s) in expected.Zip(schema))
            {
                Assert.Equal(field.IsNullable ? "OPTIONAL" : "REQUIRED", s[2]);
                string physical = (string)s[1]!;
                var clr = Nullable.GetUnderlyingType(field.ClrType) ?? field.ClrType;
                if (clr == typeof(string) || clr == typeof(ReadOnlyMemory<char>))
                {
                    Assert.Equal("BYTE_ARRAY", physical);
                    Assert.Equal("UTF8", s[3]);
                }
                else if (clr == typeof(int)) Assert.Equal("INT32", physical);
                else if (clr == typeof(long)) Assert.Equal("INT64", physical);
                else if (clr == typeof(double)) Assert.Equal("DOUBLE", physical);
                else if (clr == typeof(bool)) Assert.Equal("BOOLEAN", physical);
                else Assert.Fail($"unexpected type {field.ClrType} of {field.Name}");
                if (physical != "BYTE_ARRAY")
                    Assert.True(s[3] is null or "INT_32" or "INT_64", $"{b.Table}.{field.Name} has converted type {s[3]}");
            }
            Assert.Equal(b.RowCount, Duck.Scalar<long>($"SELECT count(*) FROM read_parquet({f})"));
        }
    }

    [Fact]
    public async Task Empty_batch_is_a_readable_file_without_rows()
    {
        using var dir = new TempDir();
        string f = await WriteAsync(dir, new RowBatch<RejectRow>("r", "m"));
        Assert.Equal(0L, Duck.Scalar<long>($"SELECT count(*) FROM read_parquet({f})"));
        var cols = Duck.Rows($"DESCRIBE SELECT * FROM read_parquet({f})").Select(r => (string)r[0]!);
        Assert.Equal(new[] { "run_id", "model_fingerprint", "line", "reason", "raw", "raw_bytes", "raw_sha256" }, cols);
    }

    [Fact]
    public async Task A_million_head_rows_write_quickly_in_row_groups()
    {
        using var dir = new TempDir();
        var b = new RowBatch<HeadStatRow>("run", "fp");
        const int examples = 1100;   // 1,126,400 rows: two row groups
        for (int e = 0; e < examples; e++)
            for (int i = 0; i < 32 * 32; i++)
                b.Add(new HeadStatRow("example-" + e, i / 32, i % 32, i * 0.001f));
        var sw = Stopwatch.StartNew();
        string f = await WriteAsync(dir, b);
        sw.Stop();
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"writing took {sw.Elapsed}");
        var stats = Duck.Rows($"SELECT count(*), count(DISTINCT example_id), max(layer), max(head), sum(attn_to_image IS NULL::INT) FROM read_parquet({f})")[0];
        Assert.Equal(new object?[] { (long)examples * 1024, (long)examples, 31, 31, null }, new[] { stats[0], stats[1], stats[2], stats[3], null });
        Assert.Equal(2L, Duck.Scalar<long>($"SELECT count(DISTINCT row_group_id) FROM parquet_metadata({f})"));
        Assert.Equal(0.5, Duck.Scalar<double>($"SELECT log_prob_increase FROM read_parquet({f}) WHERE example_id = 'example-1099' AND layer = 15 AND head = 20"), 6);
    }

    [Fact]
    public void Metadata_json_helper_writes_plain_values()
    {
        var json = ExampleRow.Json(new Dictionary<string, object?>
        {
            ["source"] = "coco", ["n"] = 3, ["big"] = 1L << 40, ["p"] = 0.5, ["ok"] = true, ["none"] = null, ["nan"] = double.NaN,
        });
        Assert.Equal("""{"source":"coco","n":3,"big":1099511627776,"p":0.5,"ok":true,"none":null,"nan":"NaN"}""", json);
        new RowBatch<ExampleRow>("r", "m").Add(new ExampleRow("e", "t", "p", 1, "x", 0, null, null, 1, 1, json));
    }

    [Fact]
    public void Shard_tables_hold_every_statistic_table_then_rejects_in_order()
    {
        var t = Sample.Shard(3, 2);
        Assert.Equal(["examples", "layer_stats", "head_stats", "position_stats", "neuron_stats", "logit_lens", "image_part_shares", "resid_norms", "causal_effects", "knockout_effects", "rejects"], t.All.Select(b => b.Table));
        Assert.Equal(StatisticCatalog.ShardTableNames, t.All.Select(b => b.Table));
        var counts = Sample.RowCounts(2);
        foreach (var b in t.All) Assert.Equal(counts[b.Table], b.RowCount);
        t.Clear();
        Assert.All(t.All, b => Assert.Equal(0, b.RowCount));
    }

    internal static string Join(object?[] row) => string.Join('|', row.Select(v => v switch
    {
        null => "null",
        double d => d.ToString(System.Globalization.CultureInfo.InvariantCulture),
        float x => x.ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => v.ToString(),
    }));
}
