using System.Text.Json;
using System.Text.Json.Nodes;
using DuckDB.NET.Data;
using LlavaMech.Testing;

namespace LlavaMech.Cli.Tests;

/// <summary>
/// findings, compare-methods, score-methods, reanalyze and diff on the tiny LLaVA-NeXT checkpoint over the bundled
/// shapes (84 x 84 images: a 6 x 6 base tile, a 6 x 6 high-resolution grid after unpadding and 6 newlines, 78 image
/// tokens). The ground truth is mapped onto both parts: the first example's box [55, 51, 69, 64] covers rows 3..4 and
/// columns 3..4 of each (14-pixel cells), 8 of the 72 tokens with an area.
/// </summary>
public class NextStudyCommandTests : IDisposable
{
    private const string Next = "tiny-llava-next-vicuna";
    private const string First = "shapes-00000";
    private static readonly string Shapes = Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "manifest.jsonl");
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-next-study-").FullName;
    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private static DuckDBConnection Db() { var db = new DuckDBConnection("Data Source=:memory:"); db.Open(); return db; }
    private static object? Scalar(DuckDBConnection db, string sql) { using var cmd = db.CreateCommand(); cmd.CommandText = sql; return cmd.ExecuteScalar(); }
    private static long Count(DuckDBConnection db, string sql) => Convert.ToInt64(Scalar(db, sql));
    private static string Q(string path) => path.Replace("'", "''");
    /// <summary>The first example's object cells, on the base tile and on the high-resolution grid alike.</summary>
    private const string InObject = "image_part in ('base', 'grid') and patch_row between 3 and 4 and patch_col between 3 and 4";

    [Fact]
    public void Findings_map_the_object_onto_the_base_tile_and_the_grid()
    {
        var outDir = Path.Combine(_tmp, "findings");
        var r = CliRunner.Run("findings", "--model", Fixtures.Model(Next), "--dataset", Shapes, "--limit", "3", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var md = File.ReadAllText(Path.Combine(outDir, "findings.md"));
        Assert.Contains("## Image parts: base tile, high-resolution grid, newlines", md);
        foreach (var part in new[] { "| base ", "| grid ", "| newline " }) Assert.Contains(part, md);
        var all = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "findings.json")))!.AsArray();
        Assert.Equal(3, all.Count);
        var first = all.First(f => (string)f!["id"]! == First)!;
        Assert.Equal(8.0 / 72, (double)first["object_area_share"]!, 12);
        var parts = first["parts"]!.AsArray();
        Assert.Equal(["base", "grid", "newline"], parts.Select(p => (string)p!["part"]!));
        Assert.Equal([36, 36, 6], parts.Select(p => (int)p!["tokens"]!));
        Assert.Equal(4.0 / 36, (double)parts[0]!["object_area_share"]!, 12);
        Assert.Equal(4.0 / 36, (double)parts[1]!["object_area_share"]!, 12);
        Assert.Null(parts[2]!["object_share"]);
        // The parts split the top head's image attention; its share on the object is the parts' object attention over it.
        Assert.Equal(1.0, parts.Sum(p => (double)p!["attention_share"]!), 9);
        double onObject = parts.Take(2).Sum(p => (double)p!["attention_share"]! * (double)p["object_share"]!);
        Assert.Equal((double)first["top_head_object_share"]!, onObject, 9);
        // Every object's look in a one-object scene is the asked object's, on the same 8 tokens.
        Assert.Equal(8.0 / 72, (double)first["objects"]![0]!["area_share"]!, 12);
    }

    [Fact]
    public void Compare_methods_scores_every_image_token_and_the_box_metrics_follow_from_them()
    {
        var outDir = Path.Combine(_tmp, "methods");
        var r = CliRunner.Run("compare-methods", "--model", Fixtures.Model(Next), "--dataset", Shapes, "--limit", "2", "--ig-steps", "3", "--curve-steps", "4", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var db = Db();
        string M = $"read_parquet('{Q(Path.Combine(outDir, "methods.parquet"))}')", S = $"read_parquet('{Q(Path.Combine(outDir, "scores.parquet"))}')";
        Assert.Equal(2 * 6, Count(db, $"select count(*) from {M}"));
        Assert.Equal(2 * 6 * 78, Count(db, $"select count(*) from {S}"));
        // Per example and method: 36 base, 36 grid and 6 newline tokens, each part's rows and columns on its own 6 x 6 grid.
        foreach (var (part, n) in new[] { ("base", 36L), ("grid", 36L), ("newline", 6L) })
            Assert.Equal(2 * 6 * n, Count(db, $"select count(*) from {S} where image_part = '{part}'"));
        Assert.Equal(0, Count(db, $"select count(*) from {S} where image_part <> 'newline' and (patch_row not between 0 and 5 or patch_col not between 0 and 5)"));
        Assert.Equal(0, Count(db, $"select count(*) from {S} where image_part = 'newline' and patch_col <> 6"));
        Assert.Equal(0, Count(db, $"select count(*) from {M} where not (mass_in_box between 0 and 1 and newline_mass between 0 and 1) or pointing_hit is null"));
        Assert.Equal(8.0 / 72, Convert.ToDouble(Scalar(db, $"select min(object_area_share) from {M} where example_id = '{First}'")), 12);
        // Mass in the object and the pointing game of the first example, recomputed from the scores over the 72 tokens with an area.
        Assert.Equal(0, Count(db, $"""
            with m as (select method, sum(greatest(score, 0)) filter (where {InObject}) / sum(greatest(score, 0)) filter (where image_part <> 'newline') as mass,
                              sum(greatest(score, 0)) filter (where image_part = 'newline') / sum(greatest(score, 0)) as newline
                       from {S} where example_id = '{First}' group by method),
                 top as (select method, arg_max({InObject}, score) as hit from {S} where example_id = '{First}' and image_part <> 'newline' group by method)
            select count(*) from {M} t join m using (method) join top using (method)
            where t.example_id = '{First}' and (abs(t.mass_in_box - m.mass) > 1e-9 or abs(t.newline_mass - m.newline) > 1e-9 or t.pointing_hit <> top.hit)
            """));
        var summary = File.ReadAllText(Path.Combine(outDir, "summary.md"));
        Assert.Contains("78 image tokens", summary);
        Assert.Contains("mass on newlines", summary);
        Assert.Contains("| chance (uniform random patch / uniform map) |        2 |", summary);
        Assert.True(new FileInfo(Path.Combine(outDir, "example.png")).Length > 1000, "example.png on the base tile");
    }

    [Fact]
    public void Score_methods_rank_each_method_against_the_box_on_next()
    {
        var outDir = Path.Combine(_tmp, "score");
        var r = CliRunner.Run("score-methods", "--model", Fixtures.Model(Next), "--dataset", Shapes, "--limit", "3", "--methods", "log_increase_top1,raw_attention,occlusion",
            "--curve-steps", "4", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var summary = File.ReadAllText(Path.Combine(outDir, "summary.md"));
        Assert.Contains("# Ground-truth scoring", summary);
        using var db = Db();
        string M = $"read_parquet('{Q(Path.Combine(outDir, "methods.parquet"))}')";
        foreach (var m in new[] { "log_increase_top1", "raw_attention", "occlusion" })
        {
            var row = summary.Split('\n').Single(l => l.StartsWith($"| {m} "));
            var cells = row.Split('|', StringSplitOptions.TrimEntries).Where(c => c.Length > 0).ToArray();
            Assert.Equal("3", cells[1]);
            // The pointing game's share and the mean mass in the object, as the table prints them, from methods.parquet.
            long hits = Count(db, $"select count(*) from {M} where method = '{m}' and pointing_hit");
            Assert.StartsWith($"{100.0 * hits / 3:0.0}% [", cells[5]);
            Assert.StartsWith($"{Convert.ToDouble(Scalar(db, $"select avg(mass_in_box) from {M} where method = '{m}'")):0.000}", cells[6]);
            Assert.Equal($"{Convert.ToDouble(Scalar(db, $"select avg(newline_mass) from {M} where method = '{m}'")):0.000}", cells[7]);
        }
        Assert.Equal(0, Count(db, $"select count(*) from {M} where correct is null or object_area_share not between 0.01 and 1"));
    }

    /// <summary>Three VQA and two TQA lines of the bundled shapes, with their images, in a folder of the test's own.</summary>
    private string SmallManifest()
    {
        var data = Path.Combine(_tmp, "data");
        Directory.CreateDirectory(Path.Combine(data, "images"));
        var lines = File.ReadAllLines(Shapes).Select(l => JsonNode.Parse(l)!.AsObject()).GroupBy(o => (string)o["task"]!)
            .SelectMany(g => g.Take(g.Key == "vqa" ? 3 : 2)).ToList();
        foreach (var o in lines.Where(o => o["image"] is not null))
            File.Copy(Path.Combine(Path.GetDirectoryName(Shapes)!, (string)o["image"]!), Path.Combine(data, (string)o["image"]!), overwrite: true);
        File.WriteAllLines(Path.Combine(data, "manifest.jsonl"), lines.Select(o => o.ToJsonString()));
        return Path.Combine(data, "manifest.jsonl");
    }

    [Fact]
    public void Reanalyze_reproduces_the_run_and_a_diff_with_itself_is_empty()
    {
        var manifest = SmallManifest();
        string runDir = Path.Combine(_tmp, "run"), root = Path.Combine(_tmp, "nightly");
        var run = CliRunner.Run("run", "--model", Fixtures.Model(Next), "--dataset", manifest, "--out", runDir);
        Assert.True(run.ExitCode == 0, run.Stderr);
        var re = CliRunner.Run("reanalyze", "--model", Fixtures.Model(Next), "--dataset", manifest, "--out", root);
        Assert.True(re.ExitCode == 0, re.Stderr);
        var fp = Assert.Single(Directory.GetDirectories(root, "fp-*"));
        using var db = Db();
        string T(string dir, string table) => $"read_parquet('{Q(Path.Combine(dir, table))}/*.parquet')";
        Assert.Equal(5, Count(db, $"select count(*) from {T(fp, "examples")}"));
        // The same rows, with the same image parts and numbers, in the reanalysis as in the plain run.
        const string samePlace = " and a.image_part is not distinct from b.image_part and a.patch_row is not distinct from b.patch_row and a.patch_col is not distinct from b.patch_col";
        foreach (var (table, key, same) in new[]
                 {
                     ("head_stats", "example_id, layer, head", "abs(a.log_prob_increase - b.log_prob_increase) <= 1e-9"),
                     ("position_stats", "example_id, layer, head, position", "abs(a.log_prob_increase - b.log_prob_increase) <= 1e-9" + samePlace),
                     ("image_part_shares", "example_id, layer, head, part", "abs(a.attn_share - b.attn_share) <= 1e-9"),
                 })
        {
            long n = Count(db, $"select count(*) from {T(runDir, table)}");
            Assert.True(n > 0, table);
            Assert.Equal(n, Count(db, $"select count(*) from {T(fp, table)}"));
            Assert.Equal(n, Count(db, $"select count(*) from {T(runDir, table)} a join {T(fp, table)} b using ({key}) where {same}"));
        }
        Assert.Equal(3 * 6, Count(db, $"select count(distinct (example_id, position)) from {T(fp, "position_stats")} where image_part = 'newline'"));   // 3 images x 6 rows

        var diffDir = Path.Combine(_tmp, "diff");
        var diff = CliRunner.Run("diff", "--a", runDir, "--b", fp, "--out", diffDir);
        Assert.True(diff.ExitCode == 0, diff.Stderr);
        string H = $"read_parquet('{Q(Path.Combine(diffDir, "head_diff.parquet"))}')", L = $"read_parquet('{Q(Path.Combine(diffDir, "layer_diff.parquet"))}')";
        Assert.Equal(2 * 3 * 4, Count(db, $"select count(*) from {H}"));   // vqa and tqa, 3 layers x 4 heads
        Assert.Equal(0, Count(db, $"select count(*) from {H} where abs(diff) > 1e-9 or rank_change <> 0"));
        Assert.Equal(0, Count(db, $"select count(*) from {L} where abs(diff) > 1e-9 or rank_change <> 0"));
    }
}
