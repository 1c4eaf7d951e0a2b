using LlavaMech.Runtime;
using LlavaMech.Datasets.Manifest;

namespace LlavaMech.Pipeline.Tests;

public class PlanTests
{
    [Fact]
    public void Shards_cut_examples_in_order_and_rejects_go_with_the_next_example()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Path, perTask: 8, copies: 1);   // every image once: manifest order
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
    public void The_examples_of_one_image_share_a_shard_and_shards_stay_full()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Path, perTask: 8, copies: 3);   // each image asked 3 times, far apart in the manifest
        var manifest = ManifestReader.Read(data.ManifestPath);
        var shards = JobPlan.Cut(manifest, 7);
        var placed = shards.SelectMany(s => s.Examples).ToList();
        Assert.Equal(manifest.Examples.Select(e => e.Id).Order(), placed.Select(e => e.Id).Order());   // each exactly once
        Assert.All(shards, s => Assert.InRange(s.Examples.Length, 1, 7));
        foreach (var image in manifest.Examples.Where(e => e.ImagePath is not null).GroupBy(e => e.ImagePath))
            Assert.Single(shards.Where(s => s.Examples.Any(e => e.ImagePath == image.Key)));
        // Images of 3 examples in shards of 7: at most 1 slot of 7 left empty per shard, text-only examples fill the rest.
        Assert.True(shards.Count <= (manifest.Examples.Count + 6) / 7 + 1, $"{shards.Count} shards for {manifest.Examples.Count} examples");
        Assert.Equal(manifest.Rejects.Select(r => r.Line).Order(), shards.SelectMany(s => s.Rejects).Select(r => r.Line).Order());
        foreach (var s in shards)
            foreach (var r in s.Rejects)
            {
                var next = manifest.Examples.FirstOrDefault(e => e.Line > r.Line);
                Assert.True(next is null ? s == shards[^1] : s.Examples.Any(e => e.Id == next.Id), $"reject on line {r.Line} in shard {s.Index}");
            }
        Assert.Equal(shards.Select(s => s.Examples.Select(e => e.Id)), JobPlan.Cut(manifest, 7).Select(s => s.Examples.Select(e => e.Id)));   // deterministic
    }

    [Fact]
    public void A_workers_chunks_keep_an_images_questions_together_however_many()
    {
        ManifestExample W(string id, string? image, string prompt) => new(id, image is null ? "tqa" : "vqa", image, image, prompt, null, null, "{}", 1);
        var works = new[]
        {
            W("a1", "a.png", "q1"), W("t1", null, "text"), W("b1", "b.png", "q1"), W("a2", "a.png", "question 2"),
            W("a3", "a.png", "q3"), W("b2", "b.png", "q22"), W("c1", "c.png", "q"), W("t2", null, "text 2"),
        };
        var chunks = PipelineWorker.ChunksByImage(works, 2);
        string Ids(int[] c) => string.Join(",", c.Select(i => works[i].Id));
        // a's three questions stay together though the batch size is 2; text-only examples come last, by prompt length.
        Assert.Equal(["a1,a3,a2", "b1,b2", "c1,t1", "t2"], chunks.Select(Ids));
        Assert.Equal(Enumerable.Range(0, works.Length), chunks.SelectMany(c => c).Order());
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
