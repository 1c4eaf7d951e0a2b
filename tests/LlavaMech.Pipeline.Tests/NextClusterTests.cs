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
    [Fact]
    public async Task Silo_and_submit_run_a_next_job_and_place_every_image_position_on_its_part()
    {
        using var tmp = new TempDir();
        string manifest = NextGoldens.WriteManifest(tmp.Sub("data"));

        string clusterId = "next" + Guid.NewGuid().ToString("N")[..10];
        int port = PipelineHost.FreePort(), gateway = PipelineHost.FreePort();
        string[] cluster = ["--gateway-port", $"{gateway}", "--cluster-id", clusterId];
        await using var silo = ChildProcess.Start("silo",
            ["silo", "--silo-port", $"{port}", "--devices", "cpu", "--torch-threads", "1", "--parent-pid", $"{Environment.ProcessId}", "--verbose", .. cluster]);
        await silo.WaitForOutputAsync("pulling work", TimeSpan.FromMinutes(2));

        string outDir = tmp.Sub("out");
        var submit = await ChildProcess.RunAsync("submit",
            ["submit", "--model", Fixtures.Model(NextGoldens.Model), "--dataset", manifest, "--out", outDir, "--run-id", "next-job", "--shard-size", "2", "--wait", .. cluster],
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
        Assert.Equal(NextGoldens.Cases.Length, Scalar($"select count(*) from {T("examples")}"));
        Assert.Equal(NextGoldens.Cases.Length, Scalar($"select count(distinct example_id) from {T("examples")}"));   // each once
        foreach (var (what, expected, sql) in NextGoldens.LayoutChecks(T))
            Assert.True(expected == Scalar(sql), $"{what}: expected {expected}, the worker's tables say {Scalar(sql)}");
        var parts = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json"))).RootElement.GetProperty("image_parts").EnumerateArray().ToArray();
        Assert.Equal(["base", "grid", "newline"], parts.Select(p => p.GetProperty("part").GetString()));
        Assert.Equal(1.0, parts.Sum(p => p.GetProperty("mean_attn_share").GetDouble()), 9);
    }
}
