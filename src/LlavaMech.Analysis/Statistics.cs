using System.Diagnostics;
using LlavaMech.Hooks;

namespace LlavaMech.Analysis;

/// <summary>Embeddings and per-layer block outputs at image positions, for the residual-stream lens.</summary>
/// <param name="Embeddings">[P, D] E at the image positions (the projector outputs where the image tokens are).</param>
/// <param name="AttnOut">[L, P, D] attention outputs at the image positions.</param>
/// <param name="MlpOut">[L, P, D] MLP outputs at the image positions.</param>
/// <param name="Layers">layers l (0..L) whose residual input is lensed.</param>
public sealed record ResidualLensInputs(Tensor Embeddings, Tensor AttnOut, Tensor MlpOut, IReadOnlyList<int> Layers);

/// <summary>Options of <see cref="Statistics.Compute"/>.</summary>
public sealed record StatisticsOptions
{
    /// <summary>Target token; null: argmax of the model's last logits.</summary>
    public long? TargetId { get; init; }

    /// <summary>How many top heads (by head increase) get position scores.</summary>
    public int TopKHeads { get; init; } = 3;

    /// <summary>Further heads whose position scores are wanted (in addition to the top heads).</summary>
    public IReadOnlyList<HeadIndex> ExtraHeads { get; init; } = Array.Empty<HeadIndex>();

    public NeuronOptions Neurons { get; init; } = new();

    /// <summary>Where the image tokens are and which patch each one is (from the prepared input); null for text-only prompts.</summary>
    public ImageTokenLayout? ImageLayout { get; init; }

    /// <summary>Projector outputs [P, D] for the visual-token logit lens; null: skipped.</summary>
    public Tensor? ImageFeatures { get; init; }

    /// <summary>The image's visual-lens logits, shared by the examples of one image (null: computed for this example alone).</summary>
    public SharedLensLogits? SharedLens { get; init; }

    /// <summary>How many top heads the log-increase heatmap sums (the notebook uses the best one).</summary>
    public int HeatmapHeads { get; init; } = 1;

    /// <summary>Inputs of the residual-stream lens; null: skipped.</summary>
    public ResidualLensInputs? ResidualLens { get; init; }

    /// <summary>Ids per lens row.</summary>
    public int LensTopK { get; init; } = 5;

    /// <summary>Float32 (default) or Float64: the dtype of every readout, logits and log-softmax.</summary>
    public ScalarType ComputeType { get; init; } = ScalarType.Float32;

    /// <summary>Logits materialised at once.</summary>
    public long ChunkElements { get; init; } = FrozenScaleReadout.DefaultChunkElements;
}

/// <summary>A head and its score.</summary>
public readonly record struct HeadScore(int Layer, int Head, double Score);

/// <summary>Position increase [T] of one head.</summary>
public sealed record HeadPositionScores(int Layer, int Head, double[] Scores);

/// <summary>Managed lens: top-k ids [N][k], the target's rank (0 = top) and log-probability per row.</summary>
public sealed record LensResult(int[][] TopIds, int[] TargetRank, double[] TargetLogProb);

/// <summary>Lens of the residual stream before one layer and of its attention and FFN parts, at the image positions.</summary>
public sealed record ResidualLensResult(int Layer, LensResult Resid, LensResult AttentionPart, LensResult FfnPart);

/// <summary>
/// Managed neuron scores. <see cref="Scores"/> [L][I]: exact where computed (all neurons on the exact route; the
/// <see cref="ExactIndices"/> on the screened route), first-order elsewhere. <see cref="FirstOrder"/> [L][I]: the
/// first-order score of every neuron. <see cref="ExactIndices"/>: flat indices l*I + i with exact scores, null when all are.
/// </summary>
public sealed record NeuronScores(NeuronRoute Route, double[][] Scores, double[][] FirstOrder, int[]? ExactIndices)
{
    public int Layers => Scores.Length;
    public int Width => Scores.Length == 0 ? 0 : Scores[0].Length;
    public bool IsExact(int layer, int neuron) => ExactIndices is null || Array.BinarySearch(ExactIndices, layer * Width + neuron) >= 0;
}

/// <summary>How well the screened route finds the exact top neurons.</summary>
/// <param name="Positive">fraction of the exact top-N (largest scores) among the screened top-N.</param>
/// <param name="Negative">the same for the N most negative scores.</param>
/// <param name="MaxCandidateDifference">max |screened exact score - exact-route score| over the screened candidates.</param>
/// <param name="FirstOrderCorrelation">Pearson correlation of the first-order and exact scores over all neurons.</param>
public sealed record NeuronRecall(int TopN, double Positive, double Negative, double MaxCandidateDifference, double FirstOrderCorrelation);

/// <summary>Image-side statistics.</summary>
/// <param name="ImagePositions">sequence positions of the P image tokens.</param>
/// <param name="AttentionBaseline">[P] mean over layers and heads of A[t, p].</param>
/// <param name="ImageAttentionShare">[L][H] attention mass on image positions.</param>
/// <param name="TextAttentionShare">[L][H] attention mass on the other positions.</param>
/// <param name="Heatmap">[rows][cols] log-increase heatmap on the image's patch grid of the top <see cref="HeatmapHeads"/> head(s).</param>
/// <param name="VisualTokenLens">own-RMS lens of the projector outputs (null without image features).</param>
public sealed record ImageStatistics(
    int[] ImagePositions,
    double[] AttentionBaseline,
    double[][] ImageAttentionShare,
    double[][] TextAttentionShare,
    HeadIndex[] HeatmapHeads,
    double[][] Heatmap,
    LensResult? VisualTokenLens);

/// <summary>Everything for one example, as managed arrays.</summary>
public sealed record ExampleStatistics(
    int TargetId,
    double TargetLogProb,
    int[] Top5Ids,
    double[] Top5Probs,
    double FrozenScale,
    double[] LayerAttnIncrease,
    double[] LayerFfnIncrease,
    double[][] HeadIncrease,
    HeadScore[] TopHeads,
    HeadPositionScores[] PositionIncrease,
    NeuronScores? Neurons,
    ImageStatistics? Image,
    ResidualLensResult[]? ResidualLens,
    IReadOnlyDictionary<string, double> TimingsMs)
{
    /// <summary>Position scores of one head, or null if it was not computed.</summary>
    public double[]? PositionsOf(int layer, int head) => PositionIncrease.FirstOrDefault(p => p.Layer == layer && p.Head == head)?.Scores;
}

/// <summary>The statistics of one example in one call.</summary>
public static class Statistics
{
    /// <summary>
    /// Computes every statistic of docs/METHOD.md ("The statistics") for one example under inference mode and a dispose scope; device work
    /// stays on the device of W_U, and results are copied to the host once at the end (plus two small reads: the top
    /// heads' indices and, on the screened route, the candidates per layer).
    /// </summary>
    public static ExampleStatistics Compute(LastPositionActivations activations, ReadoutWeights weights, StatisticsOptions? options = null)
    {
        var o = options ?? new StatisticsOptions();
        activations.Validate(weights);
        using var inference = inference_mode();
        using var scope = NewDisposeScope();
        var timings = new Dictionary<string, double>();
        var clock = Stopwatch.StartNew();
        void Mark(string what) { timings[what] = clock.Elapsed.TotalMilliseconds; clock.Restart(); }

        var ct = o.ComputeType;
        var dev = weights.LmHead.device;
        var acts = activations.To(ct, dev);
        int L = acts.Layers, H = weights.NumHeads;
        long T = acts.Positions;
        var host = new HostTransfer();

        using var readout = FrozenScaleReadout.Create(weights, acts.ResidFinal, o.TargetId, ct, o.ChunkElements);
        var finalLogits = readout.Logits(acts.ResidFinal);                                // [V]
        var finalLogSoftmax = finalLogits.log_softmax(0);
        var (top5Lp, top5Ids) = finalLogSoftmax.topk((int)Math.Min(5, readout.Vocab));
        var sTarget = host.Add(readout.TargetTensor);
        var sTargetLp = host.Add(finalLogSoftmax.index_select(0, readout.TargetTensor));
        var sTop5 = host.Add(top5Ids);
        var sTop5P = host.Add(top5Lp.exp());
        var sScale = host.Add(readout.ScaleTensor.reshape(1));

        // Layers and heads: one readout of [3L + L*H, D].
        var (x, mid, post) = LogProbIncrease.Streams(acts, readout);
        var c = HeadContributions.PerHead(acts, weights, ct).to(dev);
        // The logits of x_l and x_l + a_l are kept ([2L, V]): the positions and neurons below start from them.
        var lp = readout.LogProb(cat(new[] { x, mid, post, (x.unsqueeze(1) + c).reshape(L * H, -1) }, 0), 2L * L, out var preMidLogits);
        var lpx = lp.narrow(0, 0, L);
        var lpm = lp.narrow(0, L, L);
        var lpp = lp.narrow(0, 2 * L, L);
        var headInc = lp.narrow(0, 3 * L, L * H).reshape(L, H) - lpx.unsqueeze(1);
        var sAttn = host.Add(lpm - lpx);
        var sFfn = host.Add(lpp - lpm);
        var sHeads = host.Add(headInc);
        Mark("layers_heads");

        // Positions of the top heads (and the extra ones).
        var top = LogProbIncrease.TopHeads(headInc, o.TopKHeads);
        var posHeads = top.Concat(o.ExtraHeads.Where(h => !top.Contains(h))).ToArray();
        var positions = LogProbIncrease.Positions(acts, weights, readout, posHeads, lpx, preMidLogits!.narrow(0, 0, L));  // [K, T]
        var sPositions = host.Add(positions);
        var sTopScores = host.Add(top.Length == 0 ? zeros(0, ct, dev)
            : headInc.reshape(-1).index_select(0, tensor(top.Select(h => (long)h.Layer * H + h.Head).ToArray(), device: dev)));
        Mark("positions");

        // Neurons.
        var route = NeuronAttribution.ChooseRoute(L, acts.MlpWidth, readout.Vocab, o.Neurons);
        HostTransfer.Slot? sNScores = null, sNFirst = null, sNCand = null;
        if (route != NeuronRoute.None)
        {
            var lsmMid = preMidLogits!.narrow(0, L, L).log_softmax(-1);
            var n = NeuronAttribution.Compute(acts, weights, readout, o.Neurons with { Route = route }, lsmMid)!;
            sNScores = host.Add(n.Scores);
            sNFirst = host.Add(n.FirstOrder);
            if (n.Candidates is not null) sNCand = host.Add(n.Candidates);
            Mark("neurons");
        }

        // Image side.
        HostTransfer.Slot? sImgPos = null, sBase = null, sImgShare = null, sTxtShare = null, sHeat = null;
        LensSlots? visLens = null;
        HeadIndex[] heatHeads = Array.Empty<HeadIndex>();
        if (o.ImageLayout is { } layout)
        {
            var imgPos = tensor(layout.Positions.Select(p => (long)p).ToArray(), device: dev);
            sImgPos = host.Add(imgPos);
            sBase = host.Add(AttentionMaps.Baseline(acts.PatternLastRow, imgPos, ct));
            var (img, txt) = AttentionMaps.Share(acts.PatternLastRow, imgPos, ct);
            sImgShare = host.Add(img);
            sTxtShare = host.Add(txt);
            int nh = Math.Min(o.HeatmapHeads, top.Length);
            if (nh > 0 && imgPos.shape[0] > 0)
            {
                heatHeads = top.Take(nh).ToArray();
                sHeat = host.Add(AttentionMaps.LogIncreaseHeatmap(positions.narrow(0, 0, nh), layout));
            }
            Mark("image_maps");
        }
        if (o.ImageFeatures is not null)
        {
            visLens = LensSlots.Add(host, LogitLens.VisualTokens(o.ImageFeatures, readout, o.LensTopK, o.SharedLens));
            Mark("visual_lens");
        }
        (int Layer, LensSlots Resid, LensSlots Attn, LensSlots Ffn)[]? residSlots = null;
        if (o.ResidualLens is { } rl)
        {
            residSlots = LogitLens.ResidualLens(rl.Embeddings, rl.AttnOut, rl.MlpOut, rl.Layers, readout, o.LensTopK)
                .Select(r => (r.Layer, LensSlots.Add(host, r.Resid), LensSlots.Add(host, r.AttentionPart), LensSlots.Add(host, r.FfnPart)))
                .ToArray();
            Mark("residual_lens");
        }

        host.Run();
        Mark("to_host");

        var posScores = host.Doubles2(sPositions);
        var topScores = host.Doubles(sTopScores);
        var image = sImgPos is { } ip
            ? new ImageStatistics(host.Ints(ip), host.Doubles(sBase!.Value), host.Doubles2(sImgShare!.Value), host.Doubles2(sTxtShare!.Value),
                heatHeads, sHeat is { } sh ? host.Doubles2(sh) : Array.Empty<double[]>(), visLens?.Get(host))
            : null;
        if (image is null && visLens is not null)
            image = new ImageStatistics(Array.Empty<int>(), Array.Empty<double>(), Array.Empty<double[]>(), Array.Empty<double[]>(),
                heatHeads, Array.Empty<double[]>(), visLens.Get(host));
        return new ExampleStatistics(
            TargetId: host.Int(sTarget),
            TargetLogProb: host.Double(sTargetLp),
            Top5Ids: host.Ints(sTop5),
            Top5Probs: host.Doubles(sTop5P),
            FrozenScale: host.Double(sScale),
            LayerAttnIncrease: host.Doubles(sAttn),
            LayerFfnIncrease: host.Doubles(sFfn),
            HeadIncrease: host.Doubles2(sHeads),
            TopHeads: top.Select((h, i) => new HeadScore(h.Layer, h.Head, topScores[i])).ToArray(),
            PositionIncrease: posHeads.Select((h, i) => new HeadPositionScores(h.Layer, h.Head, posScores[i])).ToArray(),
            Neurons: sNScores is { } ns
                ? new NeuronScores(route, host.Doubles2(ns), host.Doubles2(sNFirst!.Value), sNCand is { } nc ? host.Ints(nc) : null)
                : null,
            Image: image,
            ResidualLens: residSlots?.Select(r => new ResidualLensResult(r.Layer, r.Resid.Get(host), r.Attn.Get(host), r.Ffn.Get(host))).ToArray(),
            TimingsMs: timings);
    }

    /// <summary>
    /// Recall of the screened route: the fraction of the exact top-N (and bottom-N) neurons of <paramref name="exact"/>
    /// found among the top-N (bottom-N) exact candidate scores of <paramref name="screened"/>.
    /// </summary>
    public static NeuronRecall Recall(NeuronScores screened, NeuronScores exact, int topN)
    {
        using var scope = NewDisposeScope();
        var ex = tensor(exact.Scores.SelectMany(r => r).ToArray());
        var sc = tensor(screened.Scores.SelectMany(r => r).ToArray());
        var fo = tensor(exact.FirstOrder.SelectMany(r => r).ToArray());
        var cand = screened.ExactIndices is null ? arange(sc.shape[0], ScalarType.Int64) : tensor(screened.ExactIndices.Select(i => (long)i).ToArray());
        var candScores = sc.index_select(0, cand);
        int n = (int)Math.Min(topN, Math.Min(ex.shape[0], cand.shape[0]));
        double Overlap(bool largest)
        {
            if (n == 0) return 1;
            var truth = ex.topk(n, largest: largest).Item2;
            var found = cand.index_select(0, candScores.topk(n, largest: largest).Item2);
            return isin(truth, found).sum().to(ScalarType.Float64).item<double>() / n;
        }
        double maxDiff = cand.shape[0] == 0 ? 0 : (candScores - ex.index_select(0, cand)).abs().max().item<double>();
        var a = fo - fo.mean();
        var b = ex - ex.mean();
        double corr = ((a * b).sum() / ((a * a).sum() * (b * b).sum()).sqrt()).item<double>();
        return new NeuronRecall(n, Overlap(true), Overlap(false), maxDiff, corr);
    }

    private sealed record LensSlots(HostTransfer.Slot Ids, HostTransfer.Slot Rank, HostTransfer.Slot LogProb)
    {
        public static LensSlots Add(HostTransfer h, LensTensors t) => new(h.Add(t.TopIds), h.Add(t.TargetRank), h.Add(t.TargetLogProb));
        public LensResult Get(HostTransfer h) => new(h.Ints2(Ids), h.Ints(Rank), h.Doubles(LogProb));
    }
}
