using System.Diagnostics;

namespace LlavaMech.Analysis;

/// <summary>Shapes of a benchmark case (defaults: llava-1.5-7b with 2 layers, 616 positions).</summary>
public sealed record BenchmarkShapes(
    int Layers = 2, int Heads = 32, int KeyValueHeads = 32, int HeadDim = 128, int Hidden = 4096,
    int Intermediate = 11008, int Vocab = 32064, int Positions = 616);

/// <summary>Timings (ms) of one benchmark run and the screened route's recall against the exact route.</summary>
/// <param name="HeadsLayersPositionsMs">Statistics.Compute without neurons: target, layers, all heads, top-3 heads' positions (second run).</param>
/// <param name="ExactNeuronsMs">exact score of every neuron (U route, computed chunk by chunk).</param>
/// <param name="ScreenedNeuronsMs">first-order screen + exact scores of the top-K candidates (second run).</param>
/// <param name="KeptNeuronsMs">the same screen keeping the top <paramref name="Kept"/> (as neuron_stats does): candidates
/// scored until no other can enter them (second run).</param>
/// <param name="KeptScored">how many of the K candidates that screen scored exactly.</param>
/// <param name="KeptSame">whether its top <paramref name="Kept"/> neurons and scores (to 1e-6) are those of scoring all K.</param>
public sealed record BenchmarkReport(
    BenchmarkShapes Shapes, string Device, ScalarType ComputeType, int Threads, int ScreenK,
    double HeadsLayersPositionsMs, double ExactNeuronsMs, double ScreenedNeuronsMs,
    NeuronRecall Recall, IReadOnlyDictionary<string, double> ComputeBreakdownMs,
    int Kept, double KeptNeuronsMs, int KeptScored, bool KeptSame)
{
    public override string ToString() =>
        $"shapes {Shapes}, device {Device}, {ComputeType}, {Threads} threads: heads+layers+positions {HeadsLayersPositionsMs:F0} ms, " +
        $"exact neurons {ExactNeuronsMs:F0} ms, screened neurons (K={ScreenK}) {ScreenedNeuronsMs:F0} ms, keeping the top {Kept} " +
        $"{KeptNeuronsMs:F0} ms ({KeptScored} of {ScreenK} scored, same top {Kept}: {(KeptSame ? "yes" : "NO")}); screened recall@{Recall.TopN} " +
        $"+{Recall.Positive:P0} -{Recall.Negative:P0}, candidate diff {Recall.MaxCandidateDifference:G3}, first-order corr {Recall.FirstOrderCorrelation:F5}; " +
        $"breakdown {string.Join(", ", ComputeBreakdownMs.Select(kv => $"{kv.Key} {kv.Value:F0}"))}";
}

/// <summary>Times the statistics on random tensors (default: llava-1.5-7b shapes) on the given device.</summary>
public static class StatisticsBenchmark
{
    /// <summary>Random activations and weights of <paramref name="shapes"/>, in float32 on <paramref name="device"/>.</summary>
    public static (LastPositionActivations Acts, ReadoutWeights Weights) RandomCase(BenchmarkShapes shapes, Device? device = null, long seed = 1234)
    {
        using var scope = NewDisposeScope();
        var dev = device ?? CPU;
        var gen = new Generator((ulong)seed, dev);
        int L = shapes.Layers, H = shapes.Heads, KV = shapes.KeyValueHeads, d = shapes.HeadDim, D = shapes.Hidden,
            I = shapes.Intermediate, V = shapes.Vocab, T = shapes.Positions;
        Tensor N(double std, params long[] shape) => (randn(shape, ScalarType.Float32, dev, generator: gen) * std).MoveToOuterDisposeScope();
        var x = N(1, L, D);
        var a = N(0.3, L, D);
        var f = N(0.3, L, D);
        var final = (x[L - 1] + a[L - 1] + f[L - 1]).MoveToOuterDisposeScope();
        var pattern = (randn(new long[] { L, H, T }, ScalarType.Float32, dev, generator: gen) * 2).softmax(-1).MoveToOuterDisposeScope();
        var values = N(1, L, T, KV, d);
        var m = (nn.functional.silu(randn(new long[] { L, I }, ScalarType.Float32, dev, generator: gen))
                 * randn(new long[] { L, I }, ScalarType.Float32, dev, generator: gen)).MoveToOuterDisposeScope();
        var g = (1 + randn(new long[] { D }, ScalarType.Float32, dev, generator: gen) * 0.1).MoveToOuterDisposeScope();
        var wu = N(0.02, V, D);
        var o = Enumerable.Range(0, L).Select(_ => N(0.02, D, H * d)).ToArray();
        var down = Enumerable.Range(0, L).Select(_ => N(0.02, D, I)).ToArray();
        return (new LastPositionActivations(x, a, f, final, pattern, values, m), new ReadoutWeights(g, wu, 1e-5, o, down, H, KV));
    }

    /// <summary>
    /// Runs the benchmark: heads + layers + positions (Statistics.Compute with no neurons, timed on its second run),
    /// the exact neuron route once, the screened route (second run), and the screened recall of the top
    /// <paramref name="recallTopN"/> against the exact route.
    /// </summary>
    public static BenchmarkReport Run(BenchmarkShapes? shapes = null, int screenK = 256, int recallTopN = 100,
        Device? device = null, ScalarType computeType = ScalarType.Float32, Action<string>? log = null, int kept = 20)
    {
        var sh = shapes ?? new BenchmarkShapes();
        using var inference = inference_mode();
        using var scope = NewDisposeScope();
        var (acts, w) = RandomCase(sh, device);
        var noNeurons = new StatisticsOptions { Neurons = new NeuronOptions(NeuronRoute.None), ComputeType = computeType };
        Statistics.Compute(acts, w, noNeurons);
        var sw = Stopwatch.StartNew();
        var s = Statistics.Compute(acts, w, noNeurons);
        double hlp = sw.Elapsed.TotalMilliseconds;
        log?.Invoke($"heads+layers+positions {hlp:F0} ms");

        using var readout = FrozenScaleReadout.Create(w, acts.ResidFinal, null, computeType);
        NeuronScores ToManaged(NeuronTensors n)
        {
            double[][] Rows(Tensor t) => Enumerable.Range(0, (int)t.shape[0])
                .Select(l => t[l].cpu().to(ScalarType.Float64).data<double>().ToArray()).ToArray();
            return new NeuronScores(n.Route, Rows(n.Scores), Rows(n.FirstOrder),
                n.Candidates?.cpu().data<long>().ToArray().Select(v => (int)v).ToArray());
        }
        NeuronTensors Screen(int? keep = null)
        {
            using var sc = NewDisposeScope();
            var r = NeuronAttribution.Screened(acts, w, readout, screenK, keep: keep);
            r.Scores.cpu().Dispose();   // wait for the device
            return new NeuronTensors(r.Route, r.Scores.MoveToOuterDisposeScope(), r.FirstOrder.MoveToOuterDisposeScope(), r.Candidates?.MoveToOuterDisposeScope());
        }
        Screen();
        sw.Restart();
        var screened = Screen();
        double screenedMs = sw.Elapsed.TotalMilliseconds;
        log?.Invoke($"screened neurons K={screenK} {screenedMs:F0} ms");
        Screen(kept);
        sw.Restart();
        var keptScreen = Screen(kept);
        double keptMs = sw.Elapsed.TotalMilliseconds;
        var (all, few) = (ToManaged(screened), ToManaged(keptScreen));
        List<(int Index, double Score)> Best(NeuronScores n) => n.Scores.SelectMany(r => r).Select((v, i) => (i, v))
            .Where(t => n.ExactIndices is null || Array.BinarySearch(n.ExactIndices, t.i) >= 0).OrderByDescending(t => t.v).Take(kept).ToList();
        var (bestAll, bestFew) = (Best(all), Best(few));
        bool same = bestAll.Select(t => t.Index).SequenceEqual(bestFew.Select(t => t.Index))
                    && bestAll.Zip(bestFew).All(p => Math.Abs(p.First.Score - p.Second.Score) <= 1e-6);
        log?.Invoke($"screened neurons keeping the top {kept} {keptMs:F0} ms, {few.ExactIndices!.Length} scored");

        sw.Restart();
        var exact = NeuronAttribution.ExactAll(acts, w, readout);
        exact.Scores.cpu().Dispose();
        double exactMs = sw.Elapsed.TotalMilliseconds;
        log?.Invoke($"exact neurons {exactMs:F0} ms");

        var recall = Statistics.Recall(all, ToManaged(exact), recallTopN);
        return new BenchmarkReport(sh, w.LmHead.device.ToString(), computeType, get_num_threads(), screenK, hlp, exactMs, screenedMs, recall, s.TimingsMs,
            kept, keptMs, few.ExactIndices.Length, same);
    }
}
