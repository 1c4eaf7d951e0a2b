using System.Text.Json.Nodes;

namespace LlavaMech.Viewer.Tests;

/// <summary>The benchmark's replicated run is a run: committed shards the viewer reads, each copy's rows equal to the source's.</summary>
[Collection(ViewerCollection.Name)]
public sealed class BenchmarkRunTests(ViewerFixture fx)
{
    [Fact]
    public async Task Replicated_run_holds_every_row_once_per_copy()
    {
        string outDir = Path.Combine(Path.GetTempPath(), "llavamech-viewer-bench-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            long made = await ViewerBenchmark.SynthesizeAsync(fx.RunDir, outDir, 100, 26, _ => { });
            Assert.Equal(104, made);   // 8 copies of the 13 examples, 2 copies per shard
            Assert.Equal(4, Directory.GetFiles(Path.Combine(outDir, "_commits")).Length);
            foreach (var table in new[] { "examples", "head_stats", "position_stats", "causal_effects" })
            {
                string Columns(string dir) => string.Join(",", fx.Query($"DESCRIBE SELECT * FROM read_parquet('{Path.Combine(dir, table)}/*.parquet')").Select(r => $"{r[0]}:{r[1]}"));
                Assert.Equal(Columns(fx.RunDir), Columns(outDir));
            }
            await using var server = await ViewerServer.StartAsync(new ViewerOptions(outDir, "127.0.0.1", 0));
            using var http = new HttpClient { BaseAddress = server.Address };
            var s = JsonNode.Parse(await http.GetStringAsync("/api/summary"))!;
            Assert.Equal(104, (long)s["examples"]!);
            Assert.Equal(4, (int)s["committed_shards"]!);
            var sourceHeads = fx.Query("SELECT e.task, count(*) FROM {head_stats} h JOIN {examples} e USING (example_id) GROUP BY ALL ORDER BY ALL");
            foreach (var r in sourceHeads)
            {
                var heads = JsonNode.Parse(await http.GetStringAsync($"/api/heads?task={r[0]}"))!.AsArray();
                Assert.All(heads, h => Assert.Equal(8 * Convert.ToInt64(r[1]) / ViewerFixture.ToyHeads, (long)h!["n_examples"]!));
            }
            string id = (string)fx.Query("SELECT example_id FROM {examples} WHERE task = 'vqa' AND example_id LIKE 'shapes-%' ORDER BY example_id LIMIT 1")[0][0]!;
            var copy = JsonNode.Parse(await http.GetStringAsync("/api/examples/r00005-" + id))!;
            var original = await fx.GetJsonAsync("/api/examples/" + id);
            Assert.Equal(original["heads"]!.ToJsonString(), copy["heads"]!.ToJsonString());
            Assert.Equal(original["positions"]!.ToJsonString(), copy["positions"]!.ToJsonString());
            Assert.Equal(original["example"]!["target_prob"]!.ToJsonString(), copy["example"]!["target_prob"]!.ToJsonString());
        }
        finally { try { Directory.Delete(outDir, true); } catch (IOException) { } }
    }

    [Fact]
    public async Task A_running_run_grows_as_shards_commit()
    {
        string outDir = Path.Combine(Path.GetTempPath(), "llavamech-viewer-running-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            await ViewerBenchmark.SynthesizeAsync(fx.RunDir, outDir, 52, 26, _ => { });   // 2 shards of 26
            string last = Path.Combine(outDir, "_commits", "shard-00001.json"), held = last + ".later";
            File.Move(last, held);                                    // shard 1 not committed yet
            File.Delete(Path.Combine(outDir, "summary.json"));        // and no summary: the run is still going
            await using var server = await ViewerServer.StartAsync(new ViewerOptions(outDir, "127.0.0.1", 0));
            using var http = new HttpClient { BaseAddress = server.Address };
            var before = JsonNode.Parse(await http.GetStringAsync("/api/summary"))!;
            Assert.Equal(26, (long)before["examples"]!);
            Assert.False((bool)before["finished"]!);
            Assert.Contains("running (1 shards committed so far)", await http.GetStringAsync("/"));

            File.Move(held, last);                                    // the commit (its manifest's existence is the commit)
            await Task.Delay(RunSource.RefreshInterval + TimeSpan.FromSeconds(1));
            var after = JsonNode.Parse(await http.GetStringAsync("/api/summary"))!;
            Assert.Equal(52, (long)after["examples"]!);
            Assert.Equal(2, (int)after["committed_shards"]!);
            Assert.Equal(2 * 26, JsonNode.Parse(await http.GetStringAsync("/api/examples?limit=500"))!.AsArray().Count);
        }
        finally { try { Directory.Delete(outDir, true); } catch (IOException) { } }
    }
}
