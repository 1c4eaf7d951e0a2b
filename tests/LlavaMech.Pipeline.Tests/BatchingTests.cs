using LlavaMech.Datasets.Manifest;
using LlavaMech.Runtime.Stats;
using System.Diagnostics;
using System.Text.Json.Nodes;
using LlavaMech.Model;
using LlavaMech.Runtime;
using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// Examples of equal sequence length share one hooked pass (<see cref="PipelineAnalyzer.RunBatch"/>); their rows must
/// be those of the example run alone.
/// </summary>
public class BatchingTests(ITestOutputHelper output)
{
    private const double Tol = 1e-5;

    private static List<ManifestExample> Bundled()
    {
        var lines = File.ReadAllLines(Path.Combine(TestData.Bundled, "manifest.jsonl"));
        return lines.Select((l, i) =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            return new ManifestExample((string)o["id"]!, (string)o["task"]!, o["image"] is { } img ? Path.Combine(TestData.Bundled, (string)img!) : null,
                (string?)o["image"], (string)o["prompt"]!, (string?)o["expected"], null, "{}", i + 1) { RawLine = l };
        }).ToList();
    }

    [Fact]
    public void Batched_rows_equal_single_example_rows_and_rejects_stay_per_example()
    {
        var all = Bundled();
        var works = all.Where(w => w.Task == "vqa").Take(12).Concat(all.Where(w => w.Task == "tqa").Take(12)).ToList();
        // A bad example among the good ones: its image is missing; and a prompt too long for the model's context.
        works.Insert(5, works[0] with { Id = "missing", ImagePath = Path.Combine(TestData.Bundled, "images", "gone.png"), ImageRelative = "images/gone.png", Line = 999 });
        works.Insert(17, works[20] with { Id = "too-long", Prompt = "USER: " + string.Concat(Enumerable.Repeat("what is the color of the sky ", 300)) + "\nASSISTANT:" });

        using var model = LoadedModel.Load(TestData.TinyModel, new ModelLoadOptions("cpu"));
        using var single = new PipelineAnalyzer(model);
        using var batched = new PipelineAnalyzer(model);
        var one = new AnalysisSettings { BatchSize = 1 };
        var eight = new AnalysisSettings { BatchSize = 8 };

        var expected = works.Select(w => single.Run(w, one)).ToArray();
        var actual = batched.RunBatch(works, eight);

        // VQA prompts share one length (12 -> passes of 8 and 4); TQA lengths vary, so some share a pass and some do not.
        int accepted = expected.Count(o => !o.Rejected);
        Assert.Equal(accepted, single.ForwardPasses);
        Assert.True(batched.ForwardPasses < accepted, $"{batched.ForwardPasses} passes for {accepted} examples: nothing was batched");
        Assert.Equal(0, batched.BatchFallbacks);
        var vqaLengths = expected.Where(o => o.Work.Task == "vqa" && !o.Rejected).Select(o => o.Rows!.Example.SeqLen).Distinct().ToList();
        Assert.Single(vqaLengths);
        output.WriteLine($"{works.Count} examples ({accepted} accepted): {single.ForwardPasses} single passes, {batched.ForwardPasses} batched passes");

        Assert.Equal(works.Count, actual.Length);
        for (int i = 0; i < works.Count; i++)
        {
            var e = expected[i];
            var a = actual[i];
            Assert.Same(works[i], a.Work);
            Assert.Equal(e.Rejected, a.Rejected);
            Assert.Equal(e.RejectReason, a.RejectReason);
            if (e.Rejected) continue;
            AssertRowsEqual(e.Rows!, a.Rows!);
        }
        Assert.True(actual.Single(o => o.Work.Id == "missing").Rejected);
        Assert.Contains("gone.png", actual.Single(o => o.Work.Id == "missing").RejectReason);
        Assert.True(actual.Single(o => o.Work.Id == "too-long").Rejected);

        // The expected-answer target: the same targets and rejects (answers that are not one token) batched as alone.
        var target = new AnalysisSettings { BatchSize = 8, Target = TargetMode.Expected };
        var sub = works.Take(14).ToList();
        var expectedT = sub.Select(w => single.Run(w, target with { BatchSize = 1 })).ToArray();
        var actualT = batched.RunBatch(sub, target);
        for (int i = 0; i < sub.Count; i++)
        {
            Assert.Equal(expectedT[i].RejectReason, actualT[i].RejectReason);
            if (!expectedT[i].Rejected) AssertRowsEqual(expectedT[i].Rows!, actualT[i].Rows!);
        }
    }

    private static void AssertRowsEqual(ExampleRows e, ExampleRows a)
    {
        var x = e.Example; var y = a.Example;
        Assert.Equal(x.ExampleId, y.ExampleId);
        Assert.Equal(x.TargetId, y.TargetId);
        Assert.Equal(x.TargetToken, y.TargetToken);
        Assert.Equal(x.TargetProb, y.TargetProb, Tol);
        Assert.Equal(x.Correct, y.Correct);
        Assert.Equal(x.SeqLen, y.SeqLen);
        Assert.Equal(x.NumImageTokens, y.NumImageTokens);
        var mx = JsonNode.Parse(x.Metadata)!["llavamech"]!["top5"]!.AsArray();
        var my = JsonNode.Parse(y.Metadata)!["llavamech"]!["top5"]!.AsArray();
        Assert.Equal(mx.Select(t => (int)t!["id"]!), my.Select(t => (int)t!["id"]!));
        foreach (var (p, q) in mx.Zip(my)) Assert.Equal((double)p!["prob"]!, (double)q!["prob"]!, Tol);

        Assert.Equal(e.Of<LayerStatRow>().Count, a.Of<LayerStatRow>().Count);
        foreach (var (p, q) in e.Of<LayerStatRow>().Zip(a.Of<LayerStatRow>()))
        {
            Assert.Equal((p.Layer, p.Component), (q.Layer, q.Component));
            Assert.Equal(p.LogProbIncrease, q.LogProbIncrease, Tol);
        }
        Assert.Equal(e.Of<HeadStatRow>().Count, a.Of<HeadStatRow>().Count);
        foreach (var (p, q) in e.Of<HeadStatRow>().Zip(a.Of<HeadStatRow>()))
        {
            Assert.Equal((p.Layer, p.Head), (q.Layer, q.Head));
            Assert.Equal(p.LogProbIncrease, q.LogProbIncrease, Tol);
            Assert.Equal(p.AttnToImage is null, q.AttnToImage is null);
            if (p.AttnToImage is { } s) Assert.Equal(s, q.AttnToImage!.Value, Tol);
        }
        Assert.Equal(e.Of<PositionStatRow>().Count, a.Of<PositionStatRow>().Count);
        foreach (var (p, q) in e.Of<PositionStatRow>().Zip(a.Of<PositionStatRow>()))
        {
            Assert.Equal((p.Layer, p.Head, p.Position, p.IsImage, p.PatchRow, p.PatchCol), (q.Layer, q.Head, q.Position, q.IsImage, q.PatchRow, q.PatchCol));
            Assert.Equal(p.LogProbIncrease, q.LogProbIncrease, Tol);
            Assert.Equal(p.AttnWeight, q.AttnWeight, Tol);
        }
        Assert.Equal(e.Of<NeuronStatRow>().Count, a.Of<NeuronStatRow>().Count);
        foreach (var (p, q) in e.Of<NeuronStatRow>().Zip(a.Of<NeuronStatRow>()))
        {
            Assert.Equal((p.Layer, p.Neuron), (q.Layer, q.Neuron));
            Assert.Equal(p.LogProbIncrease, q.LogProbIncrease, Tol);
            Assert.Equal(p.Coefficient, q.Coefficient, Tol);
        }
        Assert.Equal(e.Of<LogitLensRow>().Count, a.Of<LogitLensRow>().Count);
        foreach (var (p, q) in e.Of<LogitLensRow>().Zip(a.Of<LogitLensRow>()))
            Assert.Equal((p.Position, p.Rank, p.TokenId, p.Token), (q.Position, q.Rank, q.TokenId, q.Token));
    }

    [Fact]
    public async Task Runner_batches_run_as_one_work_item_and_keep_per_example_accounting()
    {
        var all = Bundled();
        var works = all.Where(w => w.Task == "vqa").Take(6).Concat(all.Where(w => w.Task == "tqa").Take(4)).ToList();
        works.Add(works[0] with { Id = "missing", ImagePath = Path.Combine(TestData.Bundled, "images", "gone.png"), Line = 77 });
        await using var runner = new DeviceRunner(new DeviceRunnerOptions { Device = "cpu", Threads = 1, Capacity = 1 });
        await runner.StartAsync(default);
        var model = new ModelSpec(TestData.TinyModel);
        var settings = new AnalysisSettings { BatchSize = 8 };
        var batched = await runner.AnalyzeBatchAsync(model, works, settings);
        var singles = await Task.WhenAll(works.Select(w => runner.AnalyzeAsync(model, w, settings with { BatchSize = 1 })));
        Assert.Equal(works.Select(w => w.Id), batched.Select(o => o.Work.Id));
        for (int i = 0; i < works.Count; i++)
        {
            Assert.Equal(singles[i].RejectReason, batched[i].RejectReason);
            if (!singles[i].Rejected) AssertRowsEqual(singles[i].Rows!, batched[i].Rows!);
        }
        Assert.True(batched[^1].Rejected);
        var stats = runner.Stats;
        Assert.Equal(2 * works.Count, stats.Examples);
        Assert.Equal(2, stats.Rejected);
        Assert.Equal(1, stats.ModelLoads);
    }

    [Fact]
    public void Batch_size_is_validated()
    {
        Assert.Throws<ArgumentException>(() => new AnalysisSettings { BatchSize = 0 }.Validate());
        Assert.Throws<ArgumentException>(() => new JobOptions { Analysis = new AnalysisSettings { BatchSize = 0 } }.Validate());
        Assert.Equal(8, new JobOptions().Analysis.BatchSize);
        Assert.Equal(3, new JobOptions { Analysis = new AnalysisSettings { BatchSize = 3 } }.Analysis.BatchSize);
    }

    /// <summary>Throughput of the bundled 128 examples, batch 8 against 1 (set LLAVAMECH_BENCH_BATCH=1 to run).</summary>
    [Fact]
    public void Batch_speed_over_the_bundled_examples()
    {
        if (Environment.GetEnvironmentVariable("LLAVAMECH_BENCH_BATCH") != "1") return;
        var works = Bundled();
        using var model = LoadedModel.Load(TestData.TinyModel, new ModelLoadOptions("cpu"));
        using var analyzer = new PipelineAnalyzer(model);
        _ = analyzer.RunBatch(works.Take(16).ToList(), new AnalysisSettings { BatchSize = 8 });   // warm-up
        foreach (int size in new[] { 1, 8, 1, 8 })
        {
            long passes = analyzer.ForwardPasses;
            var sw = Stopwatch.StartNew();
            var outcomes = analyzer.RunBatch(works, new AnalysisSettings { BatchSize = size });
            double s = sw.Elapsed.TotalSeconds;
            output.WriteLine($"batch {size}: {works.Count} examples in {s:0.00} s = {works.Count / s:0.0} ex/s, {analyzer.ForwardPasses - passes} passes, " +
                $"forward {outcomes.Sum(o => o.ForwardMs):0} ms, statistics {outcomes.Sum(o => o.StatisticsMs):0} ms");
        }
    }
}
