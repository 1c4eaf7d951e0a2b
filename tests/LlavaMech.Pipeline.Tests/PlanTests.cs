using LlavaMech.Runtime;
using LlavaMech.Datasets.Manifest;

namespace LlavaMech.Pipeline.Tests;

public class PlanTests
{
    [Fact]
    public void Shards_cut_examples_in_order_and_rejects_go_with_the_next_example()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Path, perTask: 4, copies: 2);
        var manifest = ManifestReader.Read(data.ManifestPath);
        var lines = File.ReadAllText(data.ManifestPath).Split('\n');
        var shards = JobPlan.Cut(manifest, 3);

        Assert.Equal((manifest.Examples.Count + 2) / 3, shards.Count);
        Assert.Equal(manifest.Examples.Select(e => e.Id), shards.SelectMany(s => s.Examples).Select(e => e.Id));
        Assert.All(shards.SkipLast(1), s => Assert.Equal(3, s.Examples.Length));
        Assert.Equal(manifest.Rejects.Select(r => r.Line).Order(), shards.SelectMany(s => s.Rejects).Select(r => r.Line).Order());
        foreach (var s in shards)
            foreach (var r in s.Rejects)
            {
                // before the shard's first example that follows it, after the previous shard's last example
                var next = manifest.Examples.FirstOrDefault(e => e.Line > r.Line);
                Assert.True(next is null ? s == shards[^1] : s.Examples.Any(e => e.Id == next.Id), $"reject on line {r.Line} in shard {s.Index}");
            }
        Assert.All(shards.SelectMany(s => s.Examples), e => Assert.Equal(lines[e.Line - 1], e.RawLine));
        Assert.Equal(lines[manifest.Rejects[0].Line - 1], shards.SelectMany(s => s.Rejects).First().RawLine);
    }

    [Fact]
    public void A_run_record_names_every_input_a_resumed_run_changed()
    {
        var a = new RunRecord(RunRecord.CurrentFormat, "r1", "fp", "/m", "/d.jsonl", "sha", 32, 4, 100, 2, new AnalysisSettings(), "auto", DateTimeOffset.UtcNow, 1 << 20);
        Assert.Null(a.Mismatch(a with { ModelDir = "/moved", ManifestPath = "/moved.jsonl", CreatedAt = DateTimeOffset.MinValue }, "/out"));
        // The batch size never changes a result: a resumed run may change it.
        Assert.Null(a.Mismatch(a with { Analysis = new AnalysisSettings { BatchSize = 1 } }, "/out"));
        var why = a.Mismatch(a with { ShardSize = 16, Analysis = new AnalysisSettings { Target = TargetMode.Expected, TopHeads = 5 } }, "/out");
        Assert.Contains("shard size 16 (the run has 32)", why);
        Assert.Contains("--target expected (the run has argmax)", why);
        Assert.Contains("--top-heads 5 (the run has 3)", why);
        Assert.Contains("recorded in format 'llavamech-run/1' by another version", (a with { Format = "llavamech-run/1" }).Mismatch(a, "/out") ?? "");
        Assert.Contains("use --run-id r1 to resume it", a.Mismatch(a with { RunId = "r2" }, "/out"));
        Assert.Contains("model fingerprint 'other'", a.Mismatch(a with { ModelFingerprint = "other" }, "/out"));
    }

    [Fact]
    public async Task A_second_output_of_another_model_is_refused_before_any_shard()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 1, copies: 1);
        string outDir = tmp.Sub("out");
        var spec = new JobSpec("r", TestData.TinyModel, data.ManifestPath, outDir, new JobOptions { ShardSize = 2 });
        var plan = await JobPlan.PrepareAsync(spec);
        Assert.Equal(0, plan.Committed.Count);
        Assert.True(File.Exists(Path.Combine(outDir, RunRecord.Key)));
        var again = await JobPlan.PrepareAsync(spec);   // resume: same record
        Assert.Equal(plan.Run.CreatedAt, again.Run.CreatedAt);
        var other = await Assert.ThrowsAsync<JobPreparationException>(() =>
            JobPlan.PrepareAsync(spec with { ModelDir = LlavaMech.Testing.Fixtures.Model("tiny-llava-336") }));
        Assert.Contains("model fingerprint", other.Message);
        var missing = await Assert.ThrowsAsync<JobPreparationException>(() => JobPlan.PrepareAsync(spec with { ManifestPath = tmp.Sub("nope.jsonl") }));
        Assert.StartsWith("cannot read manifest", missing.Message);
    }
}
