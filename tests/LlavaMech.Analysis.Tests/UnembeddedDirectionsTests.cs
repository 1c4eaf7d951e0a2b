using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Analysis.Tests;

/// <summary>
/// The model's unembedded head blocks and neuron columns kept across examples (<see cref="UnembeddedDirections"/>): the
/// position and neuron statistics must equal the uncached ones for every example (each has its own frozen scale s), at any
/// bound, and the bound must hold.
/// </summary>
public class UnembeddedDirectionsTests
{
    private static readonly BenchmarkShapes Shapes = new(Layers: 3, Heads: 4, KeyValueHeads: 2, HeadDim: 8, Hidden: 32,
        Intermediate: 48, Vocab: 300, Positions: 20);

    private static StatisticsOptions Options(NeuronRoute route) => new()
    {
        TopKHeads = 3,
        ExtraHeads = [new HeadIndex(2, 3)],
        Neurons = new NeuronOptions(route, ScreenK: 40),
    };

    private static void AssertSame(ExampleStatistics expected, ExampleStatistics actual)
    {
        Assert.Equal(expected.PositionIncrease.Select(p => (p.Layer, p.Head)), actual.PositionIncrease.Select(p => (p.Layer, p.Head)));
        for (int k = 0; k < expected.PositionIncrease.Length; k++)
            for (int p = 0; p < expected.PositionIncrease[k].Scores.Length; p++)
                Assert.Equal(expected.PositionIncrease[k].Scores[p], actual.PositionIncrease[k].Scores[p], 1e-5);
        Assert.Equal(expected.Neurons!.ExactIndices, actual.Neurons!.ExactIndices);
        for (int l = 0; l < expected.Neurons.Scores.Length; l++)
            for (int i = 0; i < expected.Neurons.Scores[l].Length; i++)
                Assert.Equal(expected.Neurons.Scores[l][i], actual.Neurons.Scores[l][i], 1e-5);
    }

    [Theory]
    [InlineData(NeuronRoute.Screened)]
    [InlineData(NeuronRoute.Exact)]
    public void Kept_directions_give_every_example_the_uncached_statistics(NeuronRoute route)
    {
        using var scope = NewDisposeScope();
        var (acts1, weights) = StatisticsBenchmark.RandomCase(Shapes, seed: 1);
        var (acts2, _) = StatisticsBenchmark.RandomCase(Shapes, seed: 2);   // another example of the same model: another s
        using var cache = new UnembeddedDirections(1L << 30);
        var cached = weights with { Directions = cache };
        var s1 = FrozenScaleReadout.FrozenScale(acts1.ResidFinal, weights.RmsNormEps).item<float>();
        var s2 = FrozenScaleReadout.FrozenScale(acts2.ResidFinal, weights.RmsNormEps).item<float>();
        Assert.NotEqual(s1, s2, 3);

        AssertSame(Statistics.Compute(acts1, weights, Options(route)), Statistics.Compute(acts1, cached, Options(route)));
        long misses = cache.Misses, hits = cache.Hits;
        Assert.True(misses >= 4, $"{misses} directions computed");
        AssertSame(Statistics.Compute(acts2, weights, Options(route)), Statistics.Compute(acts2, cached, Options(route)));
        Assert.True(cache.Hits > hits, "the second example reuses the first one's directions");
        // Repeating an example computes nothing new.
        long missesBefore = cache.Misses;
        AssertSame(Statistics.Compute(acts2, weights, Options(route)), Statistics.Compute(acts2, cached, Options(route)));
        Assert.Equal(missesBefore, cache.Misses);
        Assert.True(cache.Bytes <= cache.CapacityBytes);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(8L * 300 * 4 + 5 * 300 * 4)]   // one head block and five neuron columns: evicting all the time
    public void A_small_bound_holds_and_changes_no_statistic(long bytes)
    {
        using var scope = NewDisposeScope();
        var (acts, weights) = StatisticsBenchmark.RandomCase(Shapes, seed: 3);
        using var cache = new UnembeddedDirections(bytes);
        var cached = weights with { Directions = cache };
        var expected = Statistics.Compute(acts, weights, Options(NeuronRoute.Screened));
        for (int r = 0; r < 2; r++)
        {
            AssertSame(expected, Statistics.Compute(acts, cached, Options(NeuronRoute.Screened)));
            Assert.True(cache.Bytes <= bytes, $"{cache.Bytes} bytes held under a bound of {bytes}");
        }
    }

    private sealed class Counted(List<string> disposed, string name) : IDisposable
    {
        public void Dispose() => disposed.Add(name);
    }

    [Fact]
    public void The_lru_evicts_the_least_recently_used_and_refuses_what_cannot_fit()
    {
        var disposed = new List<string>();
        using var lru = new BoundedLru<string, Counted>(30);
        Assert.True(lru.TryAdd("a", new Counted(disposed, "a"), 10));
        Assert.True(lru.TryAdd("b", new Counted(disposed, "b"), 10));
        Assert.True(lru.TryAdd("c", new Counted(disposed, "c"), 10));
        Assert.True(lru.TryGet("a", out _));                           // a is now the most recent: b goes first
        Assert.True(lru.TryAdd("d", new Counted(disposed, "d"), 10));
        Assert.Equal(["b"], disposed);
        Assert.False(lru.TryGet("b", out _));
        Assert.False(lru.TryAdd("huge", new Counted(disposed, "huge"), 31));   // larger than the bound: the caller keeps it
        Assert.Equal(30, lru.Bytes);
        Assert.Equal(3, lru.Count);
        Assert.Null(lru.GetOrAdd("e", 40, () => throw new InvalidOperationException("nothing is built that cannot be kept")));
        lru.Trim(10);
        Assert.Equal(["b", "c", "a"], disposed);
        Assert.Equal((1L, 2L, 3L), (lru.Hits, lru.Misses, lru.Evictions));
    }
}
