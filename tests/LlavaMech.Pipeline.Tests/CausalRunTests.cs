using System.Text.Json;
using System.Text.Json.Nodes;
using DuckDB.NET.Data;
using LlavaMech.Storage;
using Xunit.Abstractions;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// <c>run --causal K --knockout-window W</c> end to end on the tiny model: causal_effects and knockout_effects are
/// committed like every table (readable by DuckDB, one row per example and selection / window), summary.json and the
/// printed summary carry their means with 95% intervals, the figures are written, <c>diff</c> compares them, and a K
/// beyond the model's heads fails the job naming the option.
/// </summary>
public class CausalRunTests(ITestOutputHelper output)
{
    /// <summary>The first <paramref name="vqa"/> vqa and <paramref name="tqa"/> tqa lines of the bundled manifest, images copied.</summary>
    private static string Manifest(string dir, int vqa, int tqa)
    {
        var all = File.ReadAllLines(Path.Combine(TestData.Bundled, "manifest.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var lines = all.Where(o => (string)o["task"]! == "vqa").Take(vqa).Concat(all.Where(o => (string)o["task"]! == "tqa").Take(tqa)).ToList();
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        foreach (var o in lines.Where(o => o["image"] is not null))
            File.Copy(Path.Combine(TestData.Bundled, (string)o["image"]!), Path.Combine(dir, (string)o["image"]!), overwrite: true);
        string manifest = Path.Combine(dir, "manifest.jsonl");
        File.WriteAllLines(manifest, lines.Select(o => o.ToJsonString()));
        return manifest;
    }

    [Fact]
    public async Task Causal_and_knockout_tables_are_committed_summarized_and_diffed()
    {
        using var tmp = new TempDir();
        string manifest = Manifest(tmp.Sub("data"), vqa: 4, tqa: 2);
        string outDir = tmp.Sub("out");
        var r = await ChildProcess.RunAsync("causal", ["run", "--model", TestData.TinyModel, "--dataset", manifest, "--out", outDir, "--shard-size", "3",
            "--causal", "2", "--knockout-window", "2", "--torch-threads", "1"], null, TimeSpan.FromMinutes(3));
        output.WriteLine(r.Stdout);
        Assert.True(r.Code == 0, r.Output);
        Assert.Contains("causal vqa", r.Stdout);
        Assert.Contains("knockout vqa", r.Stdout);

        using var db = new DuckDBConnection("DataSource=:memory:");
        db.Open();
        string T(string table) => $"read_parquet('{outDir}/{table}/*.parquet')";
        // Three selections per image example, two per text-only one (no image attention share); every row once.
        Assert.Equal(3L * 4 + 2 * 2, Scalar<long>(db, $"SELECT count(*) FROM {T("causal_effects")}"));
        Assert.Equal(0L, Scalar<long>(db, $"SELECT count(*) - count(DISTINCT (example_id, selection)) FROM {T("causal_effects")}"));
        Assert.Equal(0L, Scalar<long>(db, $"SELECT count(*) FROM {T("causal_effects")} WHERE task = 'tqa' AND selection = 'attention'"));
        Assert.Equal(0L, Scalar<long>(db, $"SELECT count(*) FROM {T("causal_effects")} WHERE k <> 2 OR len(string_split(heads, ',')) <> 2"));
        // clean_logprob is the examples row's ln target_prob.
        Assert.True(Scalar<double>(db, $"""
            SELECT max(abs(c.clean_logprob - ln(e.target_prob))) FROM {T("causal_effects")} c JOIN {T("examples")} e USING (run_id, example_id)
            """) < 1e-9);
        // Tiny model: 4 layers, W = 2: windows 0-1, 1-2, 2-3 for each of the 4 image examples.
        Assert.Equal(3L * 4, Scalar<long>(db, $"SELECT count(*) FROM {T("knockout_effects")}"));
        Assert.Equal([0L, 1, 2], Rows(db, $"""SELECT DISTINCT start_layer FROM {T("knockout_effects")} WHERE window_size = 2 AND end_layer = start_layer + 1 ORDER BY 1""")
            .Select(x => Convert.ToInt64(x[0])));

        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json")));
        var causal = summary.RootElement.GetProperty("causal").EnumerateArray().ToList();
        Assert.Equal(["tqa/log_increase", "tqa/random", "vqa/log_increase", "vqa/attention", "vqa/random"],
            causal.Select(c => $"{c.GetProperty("task").GetString()}/{c.GetProperty("selection").GetString()}"));
        var li = causal[2];
        Assert.Equal(4, li.GetProperty("n").GetInt32());
        double mean = Scalar<double>(db, $"SELECT avg(delta) FROM {T("causal_effects")} WHERE task = 'vqa' AND selection = 'log_increase'");
        Assert.Equal(mean, li.GetProperty("mean_delta").GetDouble(), 1e-12);
        var ci = li.GetProperty("mean_delta_ci95").EnumerateArray().Select(x => x.GetDouble()).ToArray();
        double sd = Scalar<double>(db, $"SELECT stddev_samp(delta) FROM {T("causal_effects")} WHERE task = 'vqa' AND selection = 'log_increase'");
        Assert.Equal(mean - 3.182446305284263 * sd / 2, ci[0], 1e-9);   // t(0.975, 3) = 3.1824463
        Assert.Equal(mean + 3.182446305284263 * sd / 2, ci[1], 1e-9);
        // Paired: log_increase against attention and random on the same examples.
        var paired = summary.RootElement.GetProperty("causal_paired").EnumerateArray().ToList();
        Assert.Equal(["tqa/random", "vqa/attention", "vqa/random"], paired.Select(c => $"{c.GetProperty("task").GetString()}/{c.GetProperty("versus").GetString()}"));
        double diffMean = Scalar<double>(db, $"""
            SELECT avg(a.delta - b.delta) FROM {T("causal_effects")} a JOIN {T("causal_effects")} b USING (example_id)
            WHERE a.selection = 'log_increase' AND b.selection = 'random' AND a.task = 'vqa'
            """);
        Assert.Equal(diffMean, paired[2].GetProperty("mean_diff").GetDouble(), 1e-12);
        Assert.Equal(4, paired[2].GetProperty("n").GetInt32());
        Assert.Contains("paired vqa", r.Stdout);
        Assert.Equal(3, summary.RootElement.GetProperty("knockout_curve").GetArrayLength());
        Assert.True(File.Exists(Path.Combine(outDir, "figures", "causal.png")));
        Assert.True(File.Exists(Path.Combine(outDir, "figures", "knockout.png")));

        // diff of the run with itself: every causal group and knockout point, each with diff 0.
        var diff = await RunDiff.ComputeAsync(outDir, outDir);
        Assert.Equal(5, diff.Causal.Count);
        Assert.Equal(3, diff.Knockout.Count);
        Assert.All(diff.Causal, c => Assert.Equal(0.0, c.Diff));
        Assert.Contains("Head ablations (causal_effects)", RunDiff.Markdown(diff));

        var bad = await ChildProcess.RunAsync("causal-too-many", ["run", "--model", TestData.TinyModel, "--dataset", manifest, "--out", tmp.Sub("bad"),
            "--causal", "17"], null, TimeSpan.FromMinutes(2));
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("--causal 17: the model has 16 heads", bad.Output);
    }
}
