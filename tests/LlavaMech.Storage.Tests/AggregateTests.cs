namespace LlavaMech.Storage.Tests;

public class AggregateTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private const int L = 2, H = 6;   // 12 heads per example

    /// <summary>
    /// Model fpA, task "color": e1 (correct) head i = l*6+h has value i, e2 (incorrect) 100 - i, e3 (correct) i + 1.
    /// Model fpB, task "count": one example (no expected answer) with value -i. Shards 0 and 1 are committed; shard 2
    /// only staged (a crash), so it must not count.
    /// </summary>
    private async Task<IObjectStore> BuildAsync()
    {
        var store = new LocalObjectStore(_dir.File("out"));
        var c = new ShardCommitter(store);

        var s0 = StatisticCatalog.NewShard("run-1", "fpA");
        AddExample(s0, "e1", "color", true, i => i, attn: i => 0.5);
        AddExample(s0, "e2", "color", false, i => 100 - i, attn: i => 0.25);
        await c.CommitAsync(0, s0);

        var s1 = StatisticCatalog.NewShard("run-1", "fpA");
        AddExample(s1, "e3", "color", true, i => i + 1, attn: i => 0.0);
        await c.CommitAsync(1, s1);
        var s1b = StatisticCatalog.NewShard("run-1", "fpB");
        AddExample(s1b, "e1", "count", null, i => -i, attn: null);
        await new ShardCommitter(new LocalObjectStore(_dir.File("out"))).CommitAsync(3, s1b);

        var crashed = StatisticCatalog.NewShard("run-1", "fpA");
        AddExample(crashed, "e9", "color", true, i => 1e6, attn: i => 1);
        var cc = new ShardCommitter(store) { StepHook = step => step == "staged" ? throw new SimulatedCrash(step) : Task.CompletedTask };
        await Assert.ThrowsAsync<SimulatedCrash>(() => cc.CommitAsync(2, crashed));
        return store;
    }

    private static void AddExample(ShardTables t, string id, string task, bool? correct, Func<int, double> value, Func<int, double>? attn)
    {
        t.Add(new ExampleRow(id, task, "p", 1, "x", 0.5, correct is null ? null : "x", correct, 10, 4));
        for (int i = 0; i < L * H; i++)
            t.Add(new HeadStatRow(id, i / H, i % H, value(i), attn?.Invoke(i)));
        // layer_stats: attn = value(l), ffn = value(l) - 50: with top-k 2 of 4 both attns win.
        for (int l = 0; l < L; l++)
        {
            t.Add(new LayerStatRow(id, l, Components.Attention, value(l)));
            t.Add(new LayerStatRow(id, l, Components.Ffn, value(l) - 50));
        }
    }

    private static double Quantile(double[] v, double q)
    {
        var s = v.Order().ToArray();
        double pos = q * (s.Length - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return s[lo] + (pos - lo) * (s[hi] - s[lo]);
    }

    private static double SampleStd(double[] v)
    {
        double m = v.Average();
        return Math.Sqrt(v.Sum(x => (x - m) * (x - m)) / (v.Length - 1));
    }

    [Fact]
    public async Task Head_summary_matches_hand_computed_statistics()
    {
        var store = await BuildAsync();
        var rows = await Aggregates.HeadSummaryAsync(store);

        // fpA/color: outcomes all, correct, incorrect; fpB/count: all, unknown. 12 heads each.
        Assert.Equal(5 * L * H, rows.Count);
        Assert.Equal(new[] { ("fpA", "color", "all"), ("fpA", "color", "correct"), ("fpA", "color", "incorrect"), ("fpB", "count", "all"), ("fpB", "count", "unknown") },
            rows.Select(r => (r.ModelFingerprint, r.Task, r.Outcome)).Distinct());

        var h00 = rows.Single(r => r is { ModelFingerprint: "fpA", Outcome: "all", Layer: 0, Head: 0 });
        // Values 0 (e1), 100 (e2), 1 (e3): numbers checked by hand.
        Assert.Equal(3, h00.NExamples);
        Assert.Equal(101.0 / 3, h00.Mean, 12);
        Assert.Equal(Math.Sqrt((Math.Pow(0 - 101.0 / 3, 2) + Math.Pow(100 - 101.0 / 3, 2) + Math.Pow(1 - 101.0 / 3, 2)) / 2), h00.Stddev!.Value, 9);
        Assert.Equal(0.2, h00.Q10, 12);
        Assert.Equal(1.0, h00.Q50, 12);
        Assert.Equal(80.2, h00.Q90, 12);
        Assert.Equal(10, h00.TopK);
        Assert.Equal(1.0 / 3, h00.TopKShare, 12);   // in e2's top 10 only (e1, e3 rank it last)
        Assert.Equal(0.25, h00.MeanAttnToImage!.Value, 12);

        // Every group/head against an independent computation.
        var examples = new Dictionary<string, (string Fp, string Outcome, Func<int, double> V)>
        {
            ["A1"] = ("fpA", "correct", i => i), ["A2"] = ("fpA", "incorrect", i => 100 - i), ["A3"] = ("fpA", "correct", i => i + 1),
            ["B1"] = ("fpB", "unknown", i => -i),
        };
        foreach (var r in rows)
        {
            int i = r.Layer * H + r.Head;
            var members = examples.Values.Where(e => e.Fp == r.ModelFingerprint && (r.Outcome == "all" || e.Outcome == r.Outcome)).ToList();
            var v = members.Select(e => e.V(i)).ToArray();
            var inTop = members.Count(e => Enumerable.Range(0, L * H).Count(j => e.V(j) > e.V(i)) < 10);
            Assert.Equal(v.Length, r.NExamples);
            Assert.Equal(v.Average(), r.Mean, 9);
            if (v.Length > 1) Assert.Equal(SampleStd(v), r.Stddev!.Value, 9); else Assert.Null(r.Stddev);
            Assert.Equal(Quantile(v, 0.1), r.Q10, 9);
            Assert.Equal(Quantile(v, 0.5), r.Q50, 9);
            Assert.Equal(Quantile(v, 0.9), r.Q90, 9);
            Assert.Equal((double)inTop / v.Length, r.TopKShare, 12);
        }
        Assert.All(rows.Where(r => r.ModelFingerprint == "fpB"), r => Assert.Null(r.MeanAttnToImage));

        // Written as a Parquet table that DuckDB reads back identically.
        string glob = Duck.Q(Path.Combine(_dir.File("out"), "head_summary", "*.parquet"));
        Assert.Equal((long)rows.Count, Duck.Scalar<long>($"SELECT count(*) FROM read_parquet({glob})"));
        var back = Duck.Rows($"SELECT n_examples, mean, q90, top_k_share, top_k FROM read_parquet({glob}) WHERE model_fingerprint = 'fpA' AND outcome = 'all' AND layer = 0 AND head = 0")[0];
        Assert.Equal(new object?[] { 3L, h00.Mean, 80.2, 1.0 / 3, 10 }, back);
        var cols = Duck.Rows($"DESCRIBE SELECT * FROM read_parquet({glob})").Select(r => $"{r[0]}:{r[1]}");
        Assert.Equal(new[] { "model_fingerprint:VARCHAR", "task:VARCHAR", "outcome:VARCHAR", "layer:INTEGER", "head:INTEGER", "n_examples:BIGINT",
            "mean:DOUBLE", "stddev:DOUBLE", "q10:DOUBLE", "q50:DOUBLE", "q90:DOUBLE", "top_k:INTEGER", "top_k_share:DOUBLE", "mean_attn_to_image:DOUBLE" }, cols);
    }

    [Fact]
    public async Task Layer_summary_with_top_k_two()
    {
        var store = await BuildAsync();
        var rows = await Aggregates.LayerSummaryAsync(store, new AggregateOptions { TopK = 2 });
        Assert.Equal(5 * L * 2, rows.Count);

        var attn0 = rows.Single(r => r is { ModelFingerprint: "fpA", Outcome: "all", Layer: 0, Component: "attn" });
        Assert.Equal((3L, 101.0 / 3, 1.0, 1.0), (attn0.NExamples, attn0.Mean, attn0.Q50, attn0.TopKShare));
        var ffn1 = rows.Single(r => r is { ModelFingerprint: "fpA", Outcome: "correct", Layer: 1, Component: "ffn" });
        // e1: 1 - 50, e3: 2 - 50.
        Assert.Equal((2L, -48.5, 0.0), (ffn1.NExamples, ffn1.Mean, ffn1.TopKShare));
        Assert.Equal(Math.Sqrt(0.5), ffn1.Stddev!.Value, 12);
        Assert.Equal(-49 + 0.1, ffn1.Q10, 12);
        var unknown = rows.Single(r => r is { ModelFingerprint: "fpB", Outcome: "unknown", Layer: 1, Component: "attn" });
        Assert.Equal((1L, -1.0, (double?)null), (unknown.NExamples, unknown.Mean, unknown.Stddev));
        Assert.True(File.Exists(Path.Combine(_dir.File("out"), "layer_summary", "layer_summary.parquet")));
    }

    [Fact]
    public async Task No_committed_parts_gives_an_empty_summary()
    {
        var store = new LocalObjectStore(_dir.File("empty"));
        Assert.Empty(await Aggregates.HeadSummaryAsync(store));
        Assert.False(await store.ExistsAsync(Aggregates.HeadSummaryKey));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Aggregates.LayerSummaryAsync(store, new AggregateOptions { TopK = 0 }));
    }
}
