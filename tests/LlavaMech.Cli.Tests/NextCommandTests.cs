using System.Text.Json;
using System.Text.Json.Nodes;
using DuckDB.NET.Data;
using LlavaMech.Testing;

namespace LlavaMech.Cli.Tests;

/// <summary>
/// The commands on a LLaVA-NeXT checkpoint, as a user runs them (forward and explain against the goldens are in
/// <see cref="ForwardCommandTests"/> and <see cref="ExplainCommandTests"/>): inspect describes the anyres grid, intervene
/// edits image positions of the packed sequence, explain.json carries the layout, and bad checkpoints fail naming the
/// file and key before any weight is read.
/// </summary>
public class NextCommandTests : IDisposable
{
    private const string Next = "tiny-llava-next-vicuna";
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-next-cli-").FullName;
    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private static JsonElement Golden(string caseId) => JsonDocument.Parse(File.ReadAllText(Fixtures.File(Next, $"golden_{caseId}.json"))).RootElement;

    [Fact]
    public void Inspect_describes_the_anyres_grid_and_the_text_model()
    {
        var r = CliRunner.Run("inspect", "--model", Fixtures.Model(Next));
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("(LlavaNext)", r.Stdout);
        Assert.Contains("anyres: 36 base tokens", r.Stdout);
        Assert.Contains("pinpoints (h x w) 84x168, 168x84, 168x168, 84x252, 252x84", r.Stdout);
        Assert.Contains("(llama)", r.Stdout);
        Assert.Contains("90 tensors", r.Stdout);   // image_newline among them, names and shapes matched
    }

    [Fact]
    public void Intervene_knocks_out_the_packed_image_positions()
    {
        var g = Golden("square_near");
        var r = CliRunner.Run("intervene", "--model", Fixtures.Model(Next), "--image", Fixtures.File(Next, g.GetProperty("image").GetString()!),
            "--prompt", g.GetProperty("prompt").GetString()!, "--knockout", "last:image", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonNode.Parse(r.Stdout)!;
        var edit = j["edits"]![0]!;
        Assert.Equal(166, (int)edit["knocked_pairs"]!);                               // all N = 166 packed image positions
        var first = g.GetProperty("image_positions_first_last")[0].GetInt32();
        Assert.Equal(Enumerable.Range(first, 166), edit["key_positions"]!.AsArray().Select(p => (int)p!));
        Assert.Equal(g.GetProperty("target_id").GetInt32(), (int)j["target_id"]!);
        Assert.True((double)j["delta"]! < 0, "knocking the image out of the answer position lowers the target here");
    }

    private string Copy(string name, Action<JsonObject>? config = null, Action<JsonObject>? preprocessor = null)
    {
        var dir = Path.Combine(_tmp, name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Fixtures.Model(Next)).Where(f => !Path.GetFileName(f).StartsWith("golden_")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        void Edit(string file, Action<JsonObject>? edit)
        {
            if (edit is null) return;
            var o = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, file)))!.AsObject();
            edit(o);
            File.WriteAllText(Path.Combine(dir, file), o.ToJsonString());
        }
        Edit("config.json", config);
        Edit("preprocessor_config.json", preprocessor);
        return dir;
    }

    [Fact]
    public void Bad_checkpoints_fail_naming_the_file_and_the_key()
    {
        var g = Golden("wide_circle");
        string image = Fixtures.File(Next, g.GetProperty("image").GetString()!), prompt = g.GetProperty("prompt").GetString()!;
        var cases = new (string Dir, string File, string Key)[]
        {
            (Copy("disagree", preprocessor: p => p["image_grid_pinpoints"] = JsonNode.Parse("[[84, 168], [168, 84]]")), "preprocessor_config.json", "image_grid_pinpoints"),
            (Copy("not-multiple", config: c => c["image_grid_pinpoints"] = JsonNode.Parse("[[84, 168], [170, 84]]")), "config.json", "image_grid_pinpoints[1]"),
            (Copy("full", config: c => c["vision_feature_select_strategy"] = "full"), "config.json", "vision_feature_select_strategy 'full'"),
        };
        foreach (var (dir, file, key) in cases)
        {
            var r = CliRunner.Run("forward", "--model", dir, "--image", image, "--prompt", prompt);
            Assert.Equal(1, r.ExitCode);
            Assert.Contains(Path.Combine(dir, file), r.Stderr);
            Assert.Contains(key, r.Stderr);
        }
        var two = CliRunner.Run("forward", "--model", Fixtures.Model(Next), "--image", image, "--prompt", "USER: <image> and <image>\nWhat?\nASSISTANT:");
        Assert.Equal(1, two.ExitCode);
        Assert.Contains("2 <image> placeholders", two.Stderr);
    }

    [Fact]
    public void Run_writes_image_parts_that_match_the_reference_layout()
    {
        string manifest = NextGoldens.WriteManifest(Path.Combine(_tmp, "data"));
        var outDir = Path.Combine(_tmp, "run");
        var r = CliRunner.Run(TimeSpan.FromMinutes(5), "run", "--model", Fixtures.Model(Next), "--dataset", manifest, "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        using var db = new DuckDBConnection("Data Source=:memory:");
        db.Open();
        long Scalar(string sql) { using var cmd = db.CreateCommand(); cmd.CommandText = sql; return Convert.ToInt64(cmd.ExecuteScalar()); }
        string T(string table) => $"read_parquet('{Path.Combine(outDir, table).Replace("'", "''")}/*.parquet')";
        Assert.Equal(4, Scalar($"select count(*) from {T("examples")}"));
        foreach (var (what, expected, sql) in NextGoldens.LayoutChecks(T))
            Assert.True(expected == Scalar(sql), $"{what}: expected {expected}, the tables say {Scalar(sql)}");
        Assert.Equal(0, Scalar($"select count(*) from {T("position_stats")} where example_id = 'text_banana' and image_part is not null"));
        // Per task, does the answer come from the thumbnail or the tiles: the mean shares of image_part_shares in summary.json.
        var parts = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json"))).RootElement.GetProperty("image_parts").EnumerateArray().ToArray();
        Assert.Equal(["base", "grid", "newline"], parts.Select(p => p.GetProperty("part").GetString()));
        Assert.All(parts, p => Assert.Equal("vqa", p.GetProperty("task").GetString()));
        Assert.All(parts, p => Assert.Equal(3, p.GetProperty("examples").GetInt64()));
        Assert.Equal(1.0, parts.Sum(p => p.GetProperty("mean_attn_share").GetDouble()), 9);
        foreach (var p in parts)
        {
            double expected = Convert.ToDouble(Scalar0($"select avg(attn_share) from {T("image_part_shares")} where part = '{p.GetProperty("part").GetString()}'"));
            Assert.Equal(expected, p.GetProperty("mean_attn_share").GetDouble(), 12);
        }
        // The same shares in the printed summary (percent) and as a figure.
        var basePart = parts[0];
        Assert.Contains($"image parts vqa base: attention {basePart.GetProperty("mean_attn_share").GetDouble():P0}", r.Stdout);
        var figure = Path.Combine(outDir, "figures", "image_parts.png");
        Assert.True(File.Exists(figure) && new FileInfo(figure).Length > 1000, "figures/image_parts.png");
        object? Scalar0(string sql) { using var cmd = db.CreateCommand(); cmd.CommandText = sql; return cmd.ExecuteScalar(); }
    }

    [Fact]
    public void Bench_runs_the_family_image_a_photo_in_tiles()
    {
        var r = CliRunner.Run("bench", "--model", Fixtures.Model(Next), "--iterations", "1", "--examples", "3", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonDocument.Parse(r.Stdout[r.Stdout.IndexOf('{')..]).RootElement;   // the JSON follows the readable lines
        // A 640 x 427 photo on the tiny grid: best 168 x 168 (2 x 2 tiles + base), 12 x 12 features unpadded to 8 x 12.
        Assert.Equal(5, j.GetProperty("image_tiles").GetInt32());
        Assert.Equal(36 + 8 * 12 + 8, j.GetProperty("image_tokens").GetInt32());
        Assert.True(j.GetProperty("plain_ms").GetDouble() > 0);
    }
}
