using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LlavaMech.Testing;

namespace LlavaMech.Viewer.Tests;

/// <summary>
/// <c>llavamech serve</c> over a run of the tiny LLaVA-NeXT checkpoint (two VQA examples of the bundled shapes): the
/// example page labels the image parts, draws the logit lens of the base tile and of the high-resolution grid on their
/// own grids and lists the newlines, with the sizes DuckDB reads from position_stats.
/// </summary>
public sealed class NextViewerTests : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "llavamech-viewer-next-" + Guid.NewGuid().ToString("N")[..10]);
    private string RunDir => Path.Combine(_root, "run");
    private const string Id = "shapes-00000";

    public Task InitializeAsync()
    {
        string bundled = Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini"), data = Path.Combine(_root, "data");
        Directory.CreateDirectory(Path.Combine(data, "images"));
        var lines = File.ReadAllLines(Path.Combine(bundled, "manifest.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject())
            .Where(o => (string)o["task"]! == "vqa").Take(2).ToList();
        foreach (var o in lines) File.Copy(Path.Combine(bundled, (string)o["image"]!), Path.Combine(data, (string)o["image"]!), overwrite: true);
        File.WriteAllLines(Path.Combine(data, "manifest.jsonl"), lines.Select(o => o.ToJsonString()));
        var run = ViewerFixture.Cli("run", "--model", Fixtures.Model("tiny-llava-next-vicuna"), "--dataset", Path.Combine(data, "manifest.jsonl"), "--out", RunDir);
        if (run.ExitCode != 0) throw new InvalidOperationException($"llavamech run failed ({run.ExitCode}): {run.Stderr}\n{run.Stdout}");
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
        return Task.CompletedTask;
    }

    private long Scalar(string sql)
    {
        using var db = new DuckDB.NET.Data.DuckDBConnection("DataSource=:memory:");
        db.Open();
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql.Replace("{position_stats}", $"read_parquet('{Path.Combine(RunDir, "position_stats")}/*.parquet')", StringComparison.Ordinal);
        return Convert.ToInt64(cmd.ExecuteScalar());
    }

    [Fact]
    public async Task Serve_shows_a_next_example_by_image_part()
    {
        var (p, address, _) = await ServeCommandTests.StartAsync("serve", "--run", RunDir, "--port", "0");
        try
        {
            using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };
            using var resp = await http.GetAsync($"/examples/{Id}");
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            var html = await resp.Content.ReadAsStringAsync();
            foreach (var part in new[] { "base", "grid", "newline" }) Assert.Contains($"data-part=\"{part}\"", html);
            Assert.Contains("base: the whole image in one tile (6 x 6)", html);
            // Each lens table spans its part's grid as position_stats places it; one newline per grid row.
            string where = $"from {{position_stats}} where example_id = '{Id}'";
            foreach (var (part, table) in new[] { ("base", "lens"), ("grid", "lens-grid") })
            {
                var m = Regex.Match(html, $"<table id=\"{table}\" class=\"lens\"><tbody>(.*?)</tbody></table>");
                Assert.True(m.Success, table);
                var rows = Regex.Matches(m.Groups[1].Value, "<tr>").Count;
                var cells = Regex.Matches(m.Groups[1].Value, "<td ").Count;
                Assert.Equal(Scalar($"select max(patch_row) + 1 {where} and image_part = '{part}'"), rows);
                Assert.Equal(Scalar($"select count(distinct (patch_row, patch_col)) {where} and image_part = '{part}'"), cells);
            }
            var newlines = Regex.Match(html, "<p id=\"lens-newline\">(.*?)</p>");
            Assert.True(newlines.Success, "lens-newline");
            Assert.Equal(Scalar($"select count(distinct position) {where} and image_part = 'newline'"), Regex.Matches(newlines.Groups[1].Value, "<span ").Count);
            // The page's data carries each position's part, so the overlay draws the base tile only.
            var api = JsonNode.Parse(await http.GetStringAsync($"/api/examples/{Id}"))!;
            var positions = api["positions"]!.AsArray();
            Assert.Equal(Scalar($"select count(*) {where} and image_part = 'grid'"), positions.Count(q => (string?)q!["image_part"] == "grid"));
        }
        finally
        {
            p.Kill(true);
            p.WaitForExit();
        }
    }
}
