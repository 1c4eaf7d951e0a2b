using Xunit.Abstractions;

namespace LlavaMech.Analysis.Tests;

public class BenchmarkTests
{
    private readonly ITestOutputHelper _out;
    public BenchmarkTests(ITestOutputHelper output) => _out = output;

    [Fact]
    public void Benchmark_entry_runs_at_small_shapes()
    {
        var shapes = new BenchmarkShapes(Layers: 2, Heads: 8, KeyValueHeads: 2, HeadDim: 16, Hidden: 128, Intermediate: 344, Vocab: 1000, Positions: 40);
        var r = StatisticsBenchmark.Run(shapes, screenK: 128, recallTopN: 10);
        _out.WriteLine(r.ToString());
        Assert.Equal(10, r.Recall.TopN);
        Assert.True(r.Recall.MaxCandidateDifference < 1e-5);
        Assert.True(r.Recall.FirstOrderCorrelation > 0.99);
        Assert.True(r.Recall.Positive >= 0.9 && r.Recall.Negative >= 0.9);
        Assert.True(r.KeptSame, "the screen keeping the top 20 kept other neurons than scoring all candidates");
        Assert.InRange(r.KeptScored, r.Kept, r.ScreenK);
    }

    /// <summary>llava-1.5-7b shapes (2 layers): minutes on a CPU, so only with LLAVAMECH_BENCH=1.</summary>
    [Fact]
    public void Benchmark_at_llava_7b_shapes_when_asked()
    {
        if (Environment.GetEnvironmentVariable("LLAVAMECH_BENCH") != "1") return;
        var r = StatisticsBenchmark.Run(log: _out.WriteLine);
        _out.WriteLine(r.ToString());
        Console.WriteLine("BENCH " + r);
    }
}
