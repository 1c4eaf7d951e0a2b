using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using DuckDB.NET.Data;
using LlavaMech.Testing;

namespace LlavaMech.Viewer.Tests;

/// <summary>
/// A real run and a real viewer over it: the built CLI runs <c>llavamech run</c> on the bundled toy LLaVA over 6 VQA
/// and 6 TQA examples of <c>datasets/shapes-colors-mini</c> plus one hostile example (a prompt with a script tag, an id
/// with markup; <c>--causal 2</c> so that causal_effects has rows), then <see cref="ViewerServer"/> serves that output
/// on a free loopback port. <see cref="Query"/> reads the same Parquet with DuckDB for the expected values.
/// </summary>
public sealed class ViewerFixture : IAsyncLifetime
{
    public const string HostileId = "xss-<img src=x onerror=window.__xssId=1>";
    public const string HostilePromptMarker = "<script>window.__xss=1</script>";

    private readonly string _root = Path.Combine(Path.GetTempPath(), "llavamech-viewer-tests-" + Guid.NewGuid().ToString("N")[..10]);

    public string RunDir => Path.Combine(_root, "run");
    public string DataDir => Path.Combine(_root, "data");
    public ViewerServer Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public Uri Address => Server.Address;

    /// <summary>Layers and query heads of the shipped toy model (its config.json): the head grids the pages draw.</summary>
    public static readonly (int Layers, int Heads) ToyShape = ReadToyShape();
    public static int ToyHeads => ToyShape.Layers * ToyShape.Heads;

    private static (int, int) ReadToyShape()
    {
        var text = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "toy-llava", "config.json")))!["text_config"]!;
        return ((int)text["num_hidden_layers"]!, (int)text["num_attention_heads"]!);
    }

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Path.Combine(DataDir, "images"));
        string bundled = Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini");
        var all = File.ReadAllLines(Path.Combine(bundled, "manifest.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var chosen = all.Where(o => (string)o["task"]! == "vqa").Take(6).Concat(all.Where(o => (string)o["task"]! == "tqa").Take(6)).ToList();
        var hostile = chosen[0].DeepClone().AsObject();
        hostile["id"] = HostileId;
        hostile["prompt"] = ((string)hostile["prompt"]!).Replace("What is", HostilePromptMarker + " What is", StringComparison.Ordinal);
        // A wrong expected answer, so the run has a wrong answer to list whatever the toy model gets right.
        hostile["expected"] = (string)hostile["expected"]! == "green" ? "purple" : "green";
        chosen.Add(hostile);
        foreach (var o in chosen.Where(o => o["image"] is not null))
            File.Copy(Path.Combine(bundled, (string)o["image"]!), Path.Combine(DataDir, (string)o["image"]!), overwrite: true);
        string manifest = Path.Combine(DataDir, "manifest.jsonl");
        File.WriteAllLines(manifest, chosen.Select(o => o.ToJsonString()));

        var run = Cli("run", "--model", Path.Combine(bundled, "toy-llava"), "--dataset", manifest, "--out", RunDir, "--causal", "2");
        if (run.ExitCode != 0) throw new InvalidOperationException($"llavamech run failed ({run.ExitCode}): {run.Stderr}\n{run.Stdout}");

        Server = await ViewerServer.StartAsync(new ViewerOptions(RunDir, "127.0.0.1", 0));
        Http = new HttpClient { BaseAddress = Server.Address, Timeout = TimeSpan.FromSeconds(60) };
    }

    public async Task DisposeAsync()
    {
        Http?.Dispose();
        if (Server is not null) await Server.DisposeAsync();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>Rows of a DuckDB query in which <c>{t}</c> stands for <c>read_parquet('&lt;run&gt;/t/*.parquet')</c>.</summary>
    public List<object?[]> Query(string sql)
    {
        foreach (var table in new[] { "examples", "head_stats", "layer_stats", "position_stats", "causal_effects", "logit_lens" })
            sql = sql.Replace("{" + table + "}", $"read_parquet('{Path.Combine(RunDir, table)}/*.parquet')", StringComparison.Ordinal);
        using var db = new DuckDBConnection("DataSource=:memory:");
        db.Open();
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        using var r = cmd.ExecuteReader();
        var rows = new List<object?[]>();
        while (r.Read())
        {
            var row = new object?[r.FieldCount];
            for (int i = 0; i < row.Length; i++) row[i] = r.IsDBNull(i) ? null : r.GetValue(i) is System.Numerics.BigInteger big ? (long)big : r.GetValue(i);
            rows.Add(row);
        }
        return rows;
    }

    public async Task<JsonNode> GetJsonAsync(string path)
    {
        using var resp = await Http.GetAsync(path);
        Assert.True(resp.IsSuccessStatusCode, $"GET {path}: {(int)resp.StatusCode}");
        return JsonNode.Parse(await resp.Content.ReadAsStringAsync())!;
    }

    public sealed record CliResult(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs the built CLI (llavamech.dll next to the tests) to completion.</summary>
    public static CliResult Cli(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Fixtures.RepoRoot };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "llavamech.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(true); throw new TimeoutException($"llavamech {string.Join(' ', args)} ran past 5 minutes"); }
        p.WaitForExit();
        return new CliResult(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static double D(object? v) => Convert.ToDouble(v, CultureInfo.InvariantCulture);
}

[CollectionDefinition(Name)]
public sealed class ViewerCollection : ICollectionFixture<ViewerFixture>
{
    public const string Name = "viewer over a real run";
}
