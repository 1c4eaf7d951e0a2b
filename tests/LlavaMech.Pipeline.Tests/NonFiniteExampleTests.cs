using LlavaMech.Datasets.Manifest;
using System.Diagnostics;
using System.Text.Json.Nodes;
using DuckDB.NET.Data;
using LlavaMech.Runtime;
using LlavaMech.Testing;
using Xunit.Abstractions;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// One example whose pass is not finite must not fail its shard, the job or the silo's readiness: on a copy of the
/// tiny checkpoint whose "▁triangle" embedding row is NaN, exactly the prompts about a triangle go non-finite.
/// </summary>
public class NonFiniteExampleTests(ITestOutputHelper output)
{
    private const string Piece = "▁triangle";
    private const string Reason = "non-finite statistic target_log_prob (NaN)";

    /// <summary>A manifest of vqa lines with and without "triangle" in the prompt and tqa lines (never a triangle), interleaved.</summary>
    private static (string Manifest, HashSet<string> Bad, HashSet<string> Good) Mixed(string dir)
    {
        var all = File.ReadAllLines(Path.Combine(TestData.Bundled, "manifest.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        bool Triangle(JsonObject o) => ((string)o["prompt"]!).Contains("triangle", StringComparison.Ordinal);
        var bad = all.Where(o => (string)o["task"]! == "vqa" && Triangle(o)).Take(6).ToList();
        var good = all.Where(o => (string)o["task"]! == "vqa" && !Triangle(o)).Take(8).Concat(all.Where(o => (string)o["task"]! == "tqa").Take(6)).ToList();
        Assert.Equal(6, bad.Count);
        Assert.DoesNotContain(good, Triangle);
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var lines = new List<JsonObject>();
        for (int i = 0; i < Math.Max(bad.Count, good.Count); i++)
        {
            if (i < good.Count) lines.Add(good[i]);
            if (i < bad.Count) lines.Add(bad[i]);
        }
        foreach (var o in lines.Where(o => o["image"] is not null))
            File.Copy(Path.Combine(TestData.Bundled, (string)o["image"]!), Path.Combine(dir, (string)o["image"]!), overwrite: true);
        string manifest = Path.Combine(dir, "manifest.jsonl");
        File.WriteAllLines(manifest, lines.Select(o => o.ToJsonString()));
        return (manifest, bad.Select(o => (string)o["id"]!).ToHashSet(), good.Select(o => (string)o["id"]!).ToHashSet());
    }

    [Fact]
    public async Task Non_finite_examples_become_rejects_naming_the_statistic_and_the_rest_of_their_shards_commit_with_clean_values()
    {
        using var tmp = new TempDir();
        int token = FaultyCheckpoint.WithNonFiniteEmbeddingRow(TestData.TinyModel, tmp.Sub("nan-model"), Piece, float.NaN);
        var (manifest, bad, good) = Mixed(tmp.Sub("data"));
        output.WriteLine($"token {token} ('{Piece}') set to NaN; {bad.Count} bad and {good.Count} good examples");

        async Task<string> Run(string model, string name)
        {
            string outDir = tmp.Sub(name);
            var clock = Stopwatch.StartNew();
            // Shards of 4 (and batches of 8 within them): bad and good examples share shards and batched passes.
            var r = await ChildProcess.RunAsync(name, ["run", "--model", model, "--dataset", manifest, "--out", outDir, "--shard-size", "4", "--torch-threads", "1"],
                null, TimeSpan.FromMinutes(3));
            output.WriteLine($"--- {name} ({clock.Elapsed.TotalSeconds:0.0} s, exit {r.Code})\n{r.Stdout}");
            Assert.True(r.Code == 0, r.Output);
            Assert.Contains(": completed in", r.Stdout);
            return outDir;
        }
        string clean = await Run(TestData.TinyModel, "clean");
        string faulty = await Run(tmp.Sub("nan-model"), "faulty");

        using var db = new DuckDBConnection("DataSource=:memory:");
        db.Open();
        string T(string dir, string table) => $"read_parquet('{dir}/{table}/*.parquet')";

        // The good examples are there, each once; the bad ones are rejects with the named reason and their manifest line.
        var ids = Rows(db, $"SELECT example_id FROM {T(faulty, "examples")}").Select(r => (string)r[0]!).ToList();
        Assert.Equal(good.Order(StringComparer.Ordinal), ids.Order(StringComparer.Ordinal));
        // The rejects keep the manifest line's number and its start (raw is capped, so the id comes from the line number).
        var manifestLines = File.ReadAllLines(manifest);
        var rejects = Rows(db, $"SELECT reason, raw, line FROM {T(faulty, "rejects")}");
        Assert.All(rejects, r => Assert.StartsWith((string)r[1]!, manifestLines[Convert.ToInt32(r[2]) - 1]));
        Assert.Equal(bad.Order(StringComparer.Ordinal), rejects.Select(r => (string)JsonNode.Parse(manifestLines[Convert.ToInt32(r[2]) - 1])!["id"]!).Order(StringComparer.Ordinal));
        Assert.All(rejects, r => Assert.Equal(Reason, (string)r[0]!));
        Assert.Equal(0L, Scalar<long>(db, $"SELECT count(*) FROM {T(clean, "rejects")}"));
        foreach (var table in new[] { "layer_stats", "head_stats", "position_stats", "neuron_stats", "logit_lens" })
        {
            var badInTable = Scalar<long>(db, $"SELECT count(*) FROM {T(faulty, table)} WHERE example_id IN ({string.Join(",", bad.Select(b => $"'{b}'"))})");
            Assert.Equal(0L, badInTable);
        }

        // Equal to the clean run's values for the good examples (the same batches: rows of a pass do not mix).
        var heads = Rows(db, $"""
            SELECT count(*), max(abs(a.log_prob_increase - b.log_prob_increase)), max(abs(coalesce(a.attn_to_image, 0) - coalesce(b.attn_to_image, 0)))
            FROM {T(clean, "head_stats")} a JOIN {T(faulty, "head_stats")} b USING (example_id, layer, head)
            """)[0];
        Assert.Equal(good.Count * 4L * 4, Convert.ToInt64(heads[0]));
        Assert.Equal(good.Count * 4L * 4, Scalar<long>(db, $"SELECT count(*) FROM {T(faulty, "head_stats")}"));
        Assert.True(Convert.ToDouble(heads[1]) < 1e-5 && Convert.ToDouble(heads[2]) < 1e-5, $"head_stats differ from the clean run by {heads[1]}, {heads[2]}");
        var layers = Rows(db, $"""
            SELECT count(*), max(abs(a.log_prob_increase - b.log_prob_increase))
            FROM {T(clean, "layer_stats")} a JOIN {T(faulty, "layer_stats")} b USING (example_id, layer, component)
            """)[0];
        Assert.Equal(good.Count * 4L * 2, Convert.ToInt64(layers[0]));
        Assert.True(Convert.ToDouble(layers[1]) < 1e-5, $"layer_stats differ from the clean run by {layers[1]}");
        var examples = Rows(db, $"""
            SELECT count(*), max(abs(a.target_prob - b.target_prob)), count(*) FILTER (WHERE a.target_id <> b.target_id)
            FROM {T(clean, "examples")} a JOIN {T(faulty, "examples")} b USING (example_id)
            """)[0];
        Assert.Equal((long)good.Count, Convert.ToInt64(examples[0]));
        Assert.True(Convert.ToDouble(examples[1]) < 1e-5, $"target_prob differs by {examples[1]}");
        Assert.Equal(0L, Convert.ToInt64(examples[2]));
        output.WriteLine($"good examples: max |head diff| {heads[1]}, max |layer diff| {layers[1]}, max |p diff| {examples[1]}");
    }

    [Fact]
    public async Task A_runner_fed_a_non_finite_example_again_and_again_rejects_it_and_stays_ready()
    {
        Reference.UseOneTorchThread();
        using var tmp = new TempDir();
        FaultyCheckpoint.WithNonFiniteEmbeddingRow(TestData.TinyModel, tmp.Sub("nan-model"), Piece, float.PositiveInfinity);
        var model = new ModelSpec(tmp.Sub("nan-model"));
        await using var runner = new DeviceRunner(new DeviceRunnerOptions { Device = "cpu", Threads = 1 });
        await runner.StartAsync(default);
        var badWork = new ManifestExample("bad", "tqa", null, null, "USER: What is the color of the triangle?\nASSISTANT: The color of the triangle is", "green",
            null, "{}", 1) { RawLine = "{}" };
        var goodWork = badWork with { Id = "good", Prompt = "USER: What is the color of the tomato?\nASSISTANT: The color of the tomato is", Line = 2 };
        // More times in a row than the failures that fault a runner: a bad input is the example's problem, not the device's.
        for (int i = 0; i < DeviceRunner.FaultAfterFailures + 2; i++)
        {
            var o = await runner.AnalyzeAsync(model, badWork, new AnalysisSettings());
            Assert.True(o.Rejected);
            Assert.StartsWith("non-finite statistic ", o.RejectReason);
            Assert.Equal(DeviceRunnerState.Ready, runner.Health.State);
        }
        var batch = await runner.AnalyzeBatchAsync(model, [badWork, goodWork, badWork with { Id = "bad2", Line = 3 }], new AnalysisSettings { BatchSize = 8 });
        Assert.Equal([true, false, true], batch.Select(o => o.Rejected));
        Assert.Equal(0, runner.Stats.Failed);
        Assert.Equal(DeviceRunnerState.Ready, runner.Health.State);
        output.WriteLine($"reject reason: {batch[0].RejectReason}");
    }
}
