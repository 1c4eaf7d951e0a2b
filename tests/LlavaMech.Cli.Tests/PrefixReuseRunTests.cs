using System.Text.Json;
using DuckDB.NET.Data;
using LlavaMech.Testing;

namespace LlavaMech.Cli.Tests;

/// <summary>
/// <c>run --prefix-reuse on</c> and <c>off</c> over the same manifest (an image asked three ways, one asked once, a text-only
/// line; zero-ablation and knockout on) write the same tables, read back with DuckDB: every row, every column, numbers to
/// 1e-5 (docs/METHOD.md, "Prefix reuse").
/// </summary>
public class PrefixReuseRunTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-prefix-run-").FullName;
    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [Fact]
    public void Run_with_and_without_prefix_reuse_writes_the_same_tables()
    {
        const string M = "tiny-llava-mha";
        foreach (var f in new[] { "red_circle.png", "wide_scene.png" }) File.Copy(Fixtures.File(M, f), Path.Combine(_tmp, f));
        string Q(string shape) => $"USER: <image>\nWhat is the color of the {shape}?\nASSISTANT: The color of the {shape} is";
        var lines = new object[]
        {
            new { id = "circle-1", task = "vqa", image = "red_circle.png", prompt = Q("circle") },
            new { id = "text-1", task = "tqa", prompt = "USER: What is the color of a banana?\nASSISTANT: The color of a banana is" },
            new { id = "circle-2", task = "vqa", image = "red_circle.png", prompt = Q("square") },
            new { id = "wide-1", task = "vqa", image = "wide_scene.png", prompt = Q("circle") },
            new { id = "circle-3", task = "vqa", image = "red_circle.png", prompt = "USER: <image>\nIs there a circle in the picture, and if so, which color does it have?\nASSISTANT: It is" },
        };
        var manifest = Path.Combine(_tmp, "manifest.jsonl");
        File.WriteAllLines(manifest, lines.Select(l => JsonSerializer.Serialize(l)));
        string Run(string mode)
        {
            var dir = Path.Combine(_tmp, $"out-{mode}");
            var r = CliRunner.Run(TimeSpan.FromMinutes(5), "run", "--model", Fixtures.Model(M), "--dataset", manifest, "--out", dir,
                "--prefix-reuse", mode, "--causal", "2", "--knockout-window", "2", "--top-neurons", "5");
            Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
            return dir;
        }
        string on = Run("on"), off = Run("off");

        using var db = new DuckDBConnection("Data Source=:memory:");
        db.Open();
        List<object?[]> Rows(string dir, string table)
        {
            using var cmd = db.CreateCommand();
            cmd.CommandText = $"select * from read_parquet('{Path.Combine(dir, table).Replace("'", "''")}/*.parquet') order by all";
            using var reader = cmd.ExecuteReader();
            var rows = new List<object?[]>();
            while (reader.Read())
            {
                var row = new object?[reader.FieldCount];
                // Each run has its own id; every other column must agree.
                for (int i = 0; i < row.Length; i++) row[i] = reader.IsDBNull(i) || reader.GetName(i) == "run_id" ? null : reader.GetValue(i);
                rows.Add(row);
            }
            return rows;
        }
        var tables = Directory.GetDirectories(off).Select(Path.GetFileName).Where(t => Directory.GetFiles(Path.Combine(off, t!), "*.parquet").Length > 0).ToList();
        Assert.Contains("position_stats", tables);
        Assert.Contains("knockout_effects", tables);
        int values = 0;
        foreach (var table in tables)
        {
            var (a, b) = (Rows(off, table!), Rows(on, table!));
            Assert.True(a.Count == b.Count, $"{table}: {a.Count} rows without reuse, {b.Count} with it");
            for (int r = 0; r < a.Count; r++)
                for (int c = 0; c < a[r].Length; c++, values++)
                {
                    if (a[r][c] is double x && b[r][c] is double y)
                        Assert.True(Math.Abs(x - y) <= 1e-5 * Math.Max(1, Math.Abs(x)) || table == "image_part_shares", $"{table} row {r} column {c}: {x:R} vs {y:R}");
                    else if (a[r][c] is string sa && sa.StartsWith('{')) continue;   // JSON metadata: its numbers are compared by the runtime tests
                    else Assert.Equal(a[r][c], b[r][c]);
                }
        }
        Assert.True(values > 5000, $"{values} values compared");
    }
}
