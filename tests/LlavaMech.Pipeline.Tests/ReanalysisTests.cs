using System.Text.Json;
using DuckDB.NET.Data;
using LlavaMech.Checkpoints;
using LlavaMech.Runtime;
using Xunit.Abstractions;
using static LlavaMech.Storage.DuckDbSql;
using static TorchSharp.torch;

namespace LlavaMech.Pipeline.Tests;

/// <summary>Nightly reanalysis of model versions (run id from the fingerprint, resume) and the diff of two runs.</summary>
[Collection(PipelineCollection.Name)]
public class ReanalysisTests(ClusterFixture fx, ITestOutputHelper output)
{
    private const int ScaledLayer = 1;

    private static string? SummaryFingerprint(string runDir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(runDir, Finalizer.SummaryKey)));
        return doc.RootElement.GetProperty("model_fingerprint").GetString();
    }

    [Fact]
    public async Task Each_model_version_gets_its_own_resumable_run_and_the_diff_singles_out_the_rescaled_layer()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 8, copies: 1);   // 16 examples (+ bad lines, + one the worker rejects)
        int n = data.SourceOf.Count;
        string modelB = WriteScaledModel(TestData.TinyModel, tmp.Sub("model-b"), ScaledLayer, 3.0);
        string root = tmp.Sub("nightly");
        var template = new JobSpec("pending", TestData.TinyModel, data.ManifestPath, root, new JobOptions { ShardSize = 4 });

        // Two model versions into one root, through the library on the shared in-process cluster.
        var planA = await Reanalysis.PlanAsync(template, root);
        Assert.Null(planA.Existing);
        Assert.Null(planA.Previous);
        Assert.Equal(Reanalysis.RunIdOf(ModelFingerprint.Compute(TestData.TinyModel)), planA.Spec.RunId);
        Assert.Equal(Path.Combine(root, planA.Spec.RunId), planA.Spec.Output);
        var a = await fx.Client.RunAsync(planA.Spec, null);
        Assert.True(a.State == JobState.Completed, $"{a.State}: {a.Error}");
        await Reanalysis.RecordAsync(planA, a);

        var planB = await Reanalysis.PlanAsync(template with { ModelDir = modelB }, root);
        Assert.NotEqual(planA.Spec.RunId, planB.Spec.RunId);   // one rescaled tensor in the middle of the file: another fingerprint
        Assert.Equal(planA.Spec.RunId, planB.Previous?.RunId);
        var b = await fx.Client.RunAsync(planB.Spec, null);
        Assert.True(b.State == JobState.Completed, $"{b.State}: {b.Error}");
        await Reanalysis.RecordAsync(planB, b);
        Assert.Equal([planA.Spec.RunId, planB.Spec.RunId], (await Reanalysis.ListAsync(root)).Select(r => r.RunId));
        // summary.json names the model each run analysed.
        Assert.Equal(planA.Fingerprint, SummaryFingerprint(planA.Spec.Output));
        Assert.Equal(planB.Fingerprint, SummaryFingerprint(planB.Spec.Output));
        Assert.Equal(ModelFingerprint.Compute(modelB), planB.Fingerprint);

        // Version A again, with the CLI: the same run, every shard already computed for that fingerprint; the previous
        // run (B) is diffed right away.
        var again = await ChildProcess.RunAsync("reanalyze",
        [
            "reanalyze", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", root, "--shard-size", "4", "--torch-threads", "1",
            "--diff-out", tmp.Sub("nightly-diff"),
        ], null, TimeSpan.FromMinutes(3));
        output.WriteLine(again.Output);
        Assert.Equal(0, again.Code);
        Assert.Contains($"-> run {planA.Spec.RunId} in {planA.Spec.Output} (analysed before, completed", again.Output);
        Assert.Contains($"reanalysis   {a.ShardsTotal} of {a.ShardsTotal} shards were already computed for this model (skipped), 0 computed now", again.Stdout);
        Assert.Contains($"previous     {planB.Spec.RunId}", again.Stdout);
        Assert.True(File.Exists(Path.Combine(tmp.Sub("nightly-diff"), "diff.md")));
        using (var db = new DuckDBConnection("DataSource=:memory:"))
        {
            db.Open();
            Assert.Equal(n, Scalar<long>(db, $"SELECT count(*) FROM read_parquet('{planA.Spec.Output}/examples/*.parquet')"));
            Assert.Equal(n, Scalar<long>(db, $"SELECT count(DISTINCT example_id) FROM read_parquet('{planA.Spec.Output}/examples/*.parquet')"));
        }

        // The diff command: B (layer 1's attention output x3) against A.
        string diffDir = tmp.Sub("diff");
        var diff = await ChildProcess.RunAsync("diff", ["diff", "--a", planA.Spec.Output, "--b", planB.Spec.Output, "--out", diffDir, "--name-a", "v1", "--name-b", "v2"],
            null, TimeSpan.FromMinutes(2));
        output.WriteLine(diff.Output);
        Assert.Equal(0, diff.Code);
        foreach (var f in new[] { "head_diff.parquet", "layer_diff.parquet", "diff.md", "diff.json", "heads_diff_vqa.png", "heads_diff_tqa.png" })
            Assert.True(File.Exists(Path.Combine(diffDir, f)), f);
        Assert.Contains($"layer that changed most: {ScaledLayer} ", diff.Stdout);

        using var d = new DuckDBConnection("DataSource=:memory:");
        d.Open();
        string heads = Path.Combine(diffDir, "head_diff.parquet"), layers = Path.Combine(diffDir, "layer_diff.parquet");
        Assert.Equal(2L * 4 * 4, Scalar<long>(d, $"SELECT count(*) FROM read_parquet('{heads}')"));
        foreach (var task in new[] { "vqa", "tqa" })
        {
            // The rescaled layer's heads moved most, by a wide margin, and the head that moved most is one of them.
            var byLayer = Rows(d, $"""
                SELECT layer, avg(abs(diff)) FROM read_parquet('{heads}') WHERE task = '{task}' GROUP BY layer ORDER BY 2 DESC
                """);
            output.WriteLine($"{task}: mean |head diff| by layer: {string.Join(", ", byLayer.Select(r => $"L{r[0]} {Convert.ToDouble(r[1]):0.0000}"))}");
            Assert.Equal(ScaledLayer, Convert.ToInt32(byLayer[0][0]));
            Assert.True(Convert.ToDouble(byLayer[0][1]) > 1.5 * Convert.ToDouble(byLayer[1][1]), "the rescaled layer does not stand out");
            Assert.Equal(ScaledLayer, Convert.ToInt32(Rows(d, $"SELECT layer FROM read_parquet('{heads}') WHERE task = '{task}' ORDER BY abs(diff) DESC LIMIT 1")[0][0]));
            // Its attention block gained the most, and ranks are consistent with the means.
            Assert.Equal(ScaledLayer, Convert.ToInt32(Rows(d, $"""
                SELECT layer FROM read_parquet('{layers}') WHERE task = '{task}' AND component = 'attn' ORDER BY diff DESC LIMIT 1
                """)[0][0]));
            Assert.Equal(0L, Scalar<long>(d, $"""
                SELECT count(*) FROM read_parquet('{heads}') WHERE task = '{task}' AND (abs(diff - (mean_b - mean_a)) > 1e-12 OR rank_change <> rank_a - rank_b)
                """));
            Assert.Equal(Enumerable.Range(1, 16).Select(i => (long)i), Rows(d, $"SELECT rank_a FROM read_parquet('{heads}') WHERE task = '{task}' ORDER BY mean_a DESC, layer, head")
                .Select(r => Convert.ToInt64(r[0])));
        }
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(diffDir, "diff.json")));
        foreach (var t in json.RootElement.GetProperty("tasks").EnumerateArray())
        {
            double rho = t.GetProperty("spearman_heads").GetDouble();
            Assert.InRange(rho, -1.0, 0.9);   // head importance reordered
            Assert.Equal(n / 2, t.GetProperty("examples").GetInt32());
            Assert.Equal(ScaledLayer, t.GetProperty("layers_by_change")[0].GetProperty("layer").GetInt32());
        }
        Assert.Contains("| layer | head |", File.ReadAllText(Path.Combine(diffDir, "diff.md")));

        // A reanalysis root stands for its latest completed run (A: the CLI finished it last).
        var viaRoot = await RunDiff.ComputeAsync(root, planB.Spec.Output);
        Assert.Equal(planA.Spec.RunId, viaRoot.A.RunId);
        Assert.Equal(planB.Spec.RunId, viaRoot.B.RunId);

        // A folder that is not a run: a clear error, and nothing created.
        string missing = tmp.Sub("no-such-run");
        var bad = await ChildProcess.RunAsync("diff", ["diff", "--a", missing, "--b", planB.Spec.Output, "--out", tmp.Sub("diff2")], null, TimeSpan.FromMinutes(2));
        Assert.Equal(1, bad.Code);
        Assert.Contains($"run {missing} does not exist", bad.Output);
        Assert.False(Directory.Exists(missing));
    }

    /// <summary>A copy of the checkpoint with layer <paramref name="layer"/>'s attention output projection scaled, written with SafetensorsWriter.</summary>
    internal static string WriteScaledModel(string source, string dir, int layer, double factor)
    {
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(source))
        {
            string name = Path.GetFileName(f);
            if (name.StartsWith("golden", StringComparison.Ordinal) || name.EndsWith(".png", StringComparison.Ordinal) || name == "model.safetensors") continue;
            string to = Path.Combine(dir, name);
            File.Copy(f, to);
            File.SetAttributes(to, FileAttributes.Normal);
        }
        string target = $"language_model.model.layers.{layer}.self_attn.o_proj.weight";
        using var file = SafetensorsFile.Open(Path.Combine(source, "model.safetensors"));
        Assert.Contains(target, file.Tensors.Keys);
        using var scope = NewDisposeScope();
        var tensors = file.Tensors.Keys.OrderBy(k => file.Tensors[k].Begin)
            .Select(k => (k, k == target ? file.ReadRaw(k) * factor : file.ReadRaw(k)))
            .ToList();
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        return dir;
    }
}
