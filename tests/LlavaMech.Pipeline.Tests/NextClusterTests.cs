using System.Text.Json;
using DuckDB.NET.Data;
using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// The cluster commands on a LLaVA-NeXT checkpoint, as a user runs them: a <c>silo</c> process with a CPU worker,
/// <c>submit --wait</c> of the NeXT goldens' examples (a wide, a tall and a near-square image, a text-only prompt),
/// then <c>status</c>. The tables the worker committed place every image position on its part of the packed image
/// exactly as the reference's layout says, and summary.json carries the part shares.
/// </summary>
public class NextClusterTests(ITestOutputHelper output)
{
    private const string Next = "tiny-llava-next-vicuna";
    private static readonly string[] Cases = ["wide_circle", "tall_triangle", "square_near", "text_banana"];

    private static JsonElement Golden(string caseId) => JsonDocument.Parse(File.ReadAllText(Fixtures.File(Next, $"golden_{caseId}.json"))).RootElement;

    [Fact]
    public async Task Silo_and_submit_run_a_next_job_and_place_every_image_position_on_its_part()
    {
        using var tmp = new TempDir();
        string data = tmp.Sub("data");
        Directory.CreateDirectory(data);
        var lines = new List<string>();
        foreach (var c in Cases)
        {
            var g = Golden(c);
            string? image = g.GetProperty("image").ValueKind == JsonValueKind.String ? g.GetProperty("image").GetString() : null;
            if (image is not null) File.Copy(Fixtures.File(Next, image), Path.Combine(data, image));
            lines.Add(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["id"] = c, ["task"] = image is null ? "tqa" : "vqa", ["image"] = image, ["prompt"] = g.GetProperty("prompt").GetString(),
            }));
        }
        string manifest = Path.Combine(data, "manifest.jsonl");
        File.WriteAllLines(manifest, lines);

        string clusterId = "next" + Guid.NewGuid().ToString("N")[..10];
        int port = PipelineHost.FreePort(), gateway = PipelineHost.FreePort();
        string[] cluster = ["--gateway-port", $"{gateway}", "--cluster-id", clusterId];
        await using var silo = ChildProcess.Start("silo",
            ["silo", "--silo-port", $"{port}", "--devices", "cpu", "--torch-threads", "1", "--parent-pid", $"{Environment.ProcessId}", "--verbose", .. cluster]);
        await silo.WaitForOutputAsync("pulling work", TimeSpan.FromMinutes(2));

        string outDir = tmp.Sub("out");
        var submit = await ChildProcess.RunAsync("submit",
            ["submit", "--model", Fixtures.Model(Next), "--dataset", manifest, "--out", outDir, "--run-id", "next-job", "--shard-size", "2", "--wait", .. cluster],
            null, TimeSpan.FromMinutes(4));
        output.WriteLine(submit.Output);
        Assert.True(submit.Code == 0, submit.Output + "\n--- silo\n" + silo.Output);
        Assert.Contains("image parts vqa", submit.Stdout);   // the printed summary's part shares
        var status = await ChildProcess.RunAsync("status", ["status", "--job", "next-job", .. cluster], null, TimeSpan.FromMinutes(1));
        Assert.True(status.Code == 0, status.Output);
        Assert.Contains("next-job: completed", status.Stdout);

        using var db = new DuckDBConnection("Data Source=:memory:");
        db.Open();
        long Scalar(string sql) { using var cmd = db.CreateCommand(); cmd.CommandText = sql; return Convert.ToInt64(cmd.ExecuteScalar()); }
        string T(string table) => $"read_parquet('{Path.Combine(outDir, table).Replace("'", "''")}/*.parquet')";
        Assert.Equal(Cases.Length, Scalar($"select count(*) from {T("examples")}"));
        Assert.Equal(Cases.Length, Scalar($"select count(distinct example_id) from {T("examples")}"));   // each once
        foreach (var c in Cases.Where(c => Golden(c).GetProperty("image").ValueKind == JsonValueKind.String))
        {
            var g = Golden(c);
            string head = $"from {T("position_stats")} where example_id = '{c}' and (layer, head) = (select (layer, head) from {T("position_stats")} where example_id = '{c}' limit 1)";
            Assert.Equal(g.GetProperty("base_tokens").GetInt32(), Scalar($"select count(*) {head} and image_part = 'base'"));
            Assert.Equal(g.GetProperty("newline_tokens").GetInt32(), Scalar($"select count(*) {head} and image_part = 'newline'"));
            var kept = g.GetProperty("unpadded_grid_rows_cols");
            Assert.Equal(kept[0].GetInt32() * kept[1].GetInt32(), Scalar($"select count(*) {head} and image_part = 'grid'"));
            Assert.Equal(g.GetProperty("n_image_tokens").GetInt32(), Scalar($"select count(distinct position) from {T("logit_lens")} where example_id = '{c}'"));
            // The worker's target and sequence are the reference's.
            Assert.Equal(g.GetProperty("target_id").GetInt64(), Scalar($"select target_id from {T("examples")} where example_id = '{c}'"));
            Assert.Equal(g.GetProperty("seq_len").GetInt64(), Scalar($"select seq_len from {T("examples")} where example_id = '{c}'"));
            Assert.Equal(g.GetProperty("n_image_tokens").GetInt64(), Scalar($"select num_image_tokens from {T("examples")} where example_id = '{c}'"));
        }
        var parts = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json"))).RootElement.GetProperty("image_parts").EnumerateArray().ToArray();
        Assert.Equal(["base", "grid", "newline"], parts.Select(p => p.GetProperty("part").GetString()));
        Assert.Equal(1.0, parts.Sum(p => p.GetProperty("mean_attn_share").GetDouble()), 9);
    }
}
