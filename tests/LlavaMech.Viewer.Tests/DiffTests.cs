using System.Buffers.Binary;
using System.Net;
using System.Text.Json.Nodes;
using LlavaMech.Testing;
using Microsoft.Playwright;

namespace LlavaMech.Viewer.Tests;

/// <summary>
/// Two model versions in one reanalysis root (<c>llavamech reanalyze</c>): the toy LLaVA, and a copy whose layer-1
/// attention output projection is scaled by 3 (another fingerprint). The viewer of the second run compares it with the first.
/// </summary>
public sealed class DiffFixture : IAsyncLifetime
{
    public const int ScaledLayer = 1;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "llavamech-viewer-diff-" + Guid.NewGuid().ToString("N")[..10]);

    public string Root => Path.Combine(_root, "nightly");
    public string RunA { get; private set; } = "";
    public string RunB { get; private set; } = "";
    public ViewerServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        string bundled = Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini");
        string data = Path.Combine(_root, "data");
        Directory.CreateDirectory(Path.Combine(data, "images"));
        var lines = File.ReadAllLines(Path.Combine(bundled, "manifest.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject())
            .GroupBy(o => (string)o["task"]!).SelectMany(g => g.Take(5)).ToList();
        foreach (var o in lines.Where(o => o["image"] is not null))
            File.Copy(Path.Combine(bundled, (string)o["image"]!), Path.Combine(data, (string)o["image"]!), overwrite: true);
        File.WriteAllLines(Path.Combine(data, "manifest.jsonl"), lines.Select(o => o.ToJsonString()));

        string modelA = Path.Combine(bundled, "toy-llava");
        string modelB = WriteScaledModel(modelA, Path.Combine(_root, "model-b"), $"language_model.model.layers.{ScaledLayer}.self_attn.o_proj.weight", 3f);
        foreach (var model in new[] { modelA, modelB })
        {
            var r = ViewerFixture.Cli("reanalyze", "--model", model, "--dataset", Path.Combine(data, "manifest.jsonl"), "--out", Root);
            if (r.ExitCode != 0) throw new InvalidOperationException($"reanalyze failed ({r.ExitCode}): {r.Stderr}");
        }
        var runs = Directory.GetDirectories(Root, "fp-*").Select(Path.GetFileName).ToList();
        Assert.Equal(2, runs.Count);
        var index = Directory.GetFiles(Path.Combine(Root, "_runs")).Select(f => JsonNode.Parse(File.ReadAllText(f))!)
            .OrderBy(n => (DateTimeOffset)n["created_at"]!).Select(n => (string)n["run_id"]!).ToList();
        (RunA, RunB) = (index[0], index[1]);
        Server = await ViewerServer.StartAsync(new ViewerOptions(Path.Combine(Root, RunB), "127.0.0.1", 0));
    }

    public async Task DisposeAsync()
    {
        if (Server is not null) await Server.DisposeAsync();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>A copy of a checkpoint folder with one float32 tensor of model.safetensors multiplied by <paramref name="factor"/>.</summary>
    private static string WriteScaledModel(string source, string dir, string tensor, float factor)
    {
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(source).Where(f => !Path.GetFileName(f).StartsWith('.')))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        string weights = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        var header = JsonNode.Parse(bytes.AsSpan(8, (int)headerLength))!;
        var entry = header[tensor]!;
        Assert.Equal("F32", (string)entry["dtype"]!);
        long begin = (long)entry["data_offsets"]![0]! + 8 + headerLength, end = (long)entry["data_offsets"]![1]! + 8 + headerLength;
        for (long at = begin; at < end; at += 4)
        {
            var span = bytes.AsSpan((int)at, 4);
            BinaryPrimitives.WriteSingleLittleEndian(span, BinaryPrimitives.ReadSingleLittleEndian(span) * factor);
        }
        File.WriteAllBytes(weights, bytes);
        return dir;
    }
}

/// <summary><c>/diff</c> and <c>/api/diff</c>: run ids of the root's index only; the numbers are DuckDB's means over the shared examples.</summary>
public sealed class DiffTests(DiffFixture fx) : IClassFixture<DiffFixture>
{
    private static double MeanOver(string run, string task, int layer, int head)
    {
        using var db = new DuckDB.NET.Data.DuckDBConnection("DataSource=:memory:");
        db.Open();
        using var cmd = db.CreateCommand();
        cmd.CommandText = $"""
            SELECT avg(h.log_prob_increase) FROM read_parquet('{run}/head_stats/*.parquet') h
            JOIN read_parquet('{run}/examples/*.parquet') e USING (example_id)
            WHERE e.task = '{task}' AND h.layer = {layer} AND h.head = {head}
            """;
        return Convert.ToDouble(cmd.ExecuteScalar());
    }

    [Fact]
    public async Task Api_diff_defaults_to_the_previous_run_and_matches_duckdb()
    {
        using var http = new HttpClient { BaseAddress = fx.Server.Address };
        var d = JsonNode.Parse(await http.GetStringAsync("/api/diff"))!;
        Assert.Equal(fx.RunA, (string)d["a"]!);
        Assert.Equal(fx.RunB, (string)d["b"]!);
        var heads = d["heads"]!.AsArray();
        Assert.Equal(2 * ViewerFixture.ToyHeads, heads.Count);
        foreach (var h in heads)
        {
            string task = (string)h!["task"]!;
            int layer = (int)h["layer"]!, head = (int)h["head"]!;
            double a = MeanOver(Path.Combine(fx.Root, fx.RunA), task, layer, head), b = MeanOver(Path.Combine(fx.Root, fx.RunB), task, layer, head);
            Assert.Equal(a, (double)h["mean_a"]!, 9);
            Assert.Equal(b, (double)h["mean_b"]!, 9);
            Assert.Equal(b - a, (double)h["diff"]!, 9);
        }
        // The rescaled projection moved some head's mean in each task.
        foreach (var t in new[] { "vqa", "tqa" })
            Assert.Contains(heads, h => (string)h!["task"]! == t && Math.Abs((double)h["diff"]!) > 1e-3);
    }

    [Fact]
    public async Task Diff_names_runs_by_id_only()
    {
        using var http = new HttpClient { BaseAddress = fx.Server.Address };
        foreach (var bad in new[] { "/diff?a=" + Uri.EscapeDataString(fx.Root) + "&b=" + fx.RunB, "/diff?a=fp-nope&b=" + fx.RunB, "/api/diff?a=%2Fetc&b=" + fx.RunB })
        {
            using var r = await http.GetAsync(bad);
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        }
        using var swapped = await http.GetAsync($"/api/diff?a={fx.RunB}&b={fx.RunA}");
        Assert.Equal(HttpStatusCode.OK, swapped.StatusCode);
    }

    [Fact]
    public async Task Diff_page_in_the_browser_shows_the_head_changes()
    {
        var browser = new BrowserFixture();
        await browser.InitializeAsync();
        try
        {
        var page = await browser.Browser.NewPageAsync();
        await page.GotoAsync(new Uri(fx.Server.Address, "/diff").ToString());
        Assert.Contains(fx.RunA, await page.TextContentAsync("#run-a"));
        Assert.Contains(fx.RunB, await page.TextContentAsync("#run-b"));
        var first = page.Locator("section.task[data-task=vqa] table.changed-heads tbody tr").First;
        int layer = int.Parse((await first.GetAttributeAsync("data-layer"))!), head = int.Parse((await first.GetAttributeAsync("data-head"))!);
        double expected = MeanOver(Path.Combine(fx.Root, fx.RunB), "vqa", layer, head) - MeanOver(Path.Combine(fx.Root, fx.RunA), "vqa", layer, head);
        Assert.Equal(expected, double.Parse((await first.Locator("td.diff").GetAttributeAsync("data-value"))!, System.Globalization.CultureInfo.InvariantCulture), 9);
        Assert.Equal(ViewerFixture.ToyHeads, await page.Locator("svg#diff-vqa rect.cell").CountAsync());
        }
        finally { await browser.DisposeAsync(); }
    }
}
