namespace LlavaMech.Analysis;

/// <summary>How FFN neuron scores were (or are to be) computed.</summary>
public enum NeuronRoute
{
    /// <summary>Exact when L*I*V is at most <see cref="NeuronOptions.ExactBudget"/>, screened otherwise.</summary>
    Auto,
    /// <summary>Exact score of every neuron (U route: the neuron term kept apart from the base logits).</summary>
    Exact,
    /// <summary>First-order score of every neuron, exact scores for the top-K |first-order| candidates.</summary>
    Screened,
    /// <summary>No neuron statistics.</summary>
    None,
}

/// <summary>Neuron options. <see cref="ScreenK"/> candidates are taken over all L*I neurons together.</summary>
public sealed record NeuronOptions(
    NeuronRoute Route = NeuronRoute.Auto,
    int ScreenK = 1024,
    long ExactBudget = NeuronOptions.DefaultExactBudget)
{
    /// <summary>L*I*V up to which <see cref="NeuronRoute.Auto"/> runs the exact route (1e8: tiny models; llava-7b is 1.1e10).</summary>
    public const long DefaultExactBudget = 100_000_000;
}

/// <summary>
/// Tensor result of the neuron statistics. <see cref="Scores"/> [L, I] holds exact scores where computed (every
/// neuron on the exact route, the <see cref="Candidates"/> on the screened route) and first-order scores elsewhere;
/// <see cref="FirstOrder"/> [L, I] is the first-order score of every neuron; <see cref="Candidates"/> are the flat
/// indices l*I + i with exact scores (null on the exact route: all of them).
/// </summary>
public sealed record NeuronTensors(NeuronRoute Route, Tensor Scores, Tensor FirstOrder, Tensor? Candidates);

/// <summary>
/// FFN neuron log-probability increase: score(l, i) = logp(x_l + a_l + m_i W_down[:, i]) - logp(x_l + a_l).
/// With base logits b = logits(x_l + a_l) and U = W_U diag(g) W_down (model-only), logits(x_l + a_l + m_i w_i) =
/// b + s m_i U[:, i]; every route keeps the neuron term s m_i U[:, i] apart from b (no rounding of mid + m_i w_i),
/// computes U a chunk of columns at a time, and scores = delta_y - logsumexp(log_softmax(b) + delta).
/// </summary>
public static class NeuronAttribution
{
    /// <summary>Which route <paramref name="options"/> selects for L layers of I neurons and a vocabulary of V.</summary>
    public static NeuronRoute ChooseRoute(long layers, long width, long vocab, NeuronOptions options) =>
        options.Route != NeuronRoute.Auto ? options.Route
        : layers * width * vocab <= options.ExactBudget ? NeuronRoute.Exact : NeuronRoute.Screened;

    /// <summary>Runs the route chosen by <paramref name="options"/> (None gives null).</summary>
    public static NeuronTensors? Compute(LastPositionActivations acts, ReadoutWeights weights, FrozenScaleReadout readout,
        NeuronOptions options, Tensor? logSoftmaxMid = null)
    {
        var route = ChooseRoute(acts.Layers, acts.MlpWidth, readout.Vocab, options);
        return route switch
        {
            NeuronRoute.Exact => ExactAll(acts, weights, readout, logSoftmaxMid),
            NeuronRoute.Screened => Screened(acts, weights, readout, options.ScreenK, logSoftmaxMid),
            _ => null,
        };
    }

    /// <summary>log_softmax(logits(x_l + a_l)): [L, V].</summary>
    public static Tensor LogSoftmaxMid(LastPositionActivations acts, FrozenScaleReadout readout)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (_, mid, _) = LogProbIncrease.Streams(acts, readout);
        return readout.LogSoftmax(mid).MoveToOuterDisposeScope();
    }

    /// <summary>Exact score of every neuron: [L, I].</summary>
    public static Tensor Exact(LastPositionActivations acts, ReadoutWeights weights, FrozenScaleReadout readout, Tensor? logSoftmaxMid = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var lsm = logSoftmaxMid ?? LogSoftmaxMid(acts, readout);
        var m = acts.MlpPost.to(readout.Device).to(readout.ComputeType);
        var rows = new Tensor[acts.Layers];
        for (int l = 0; l < acts.Layers; l++)
            rows[l] = ExactForColumns(weights.DownProj[l], m[l], lsm[l], readout);
        return stack(rows, 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Exact scores of the neurons whose down_proj columns are <paramref name="downColumns"/> [D, c] with coefficients
    /// <paramref name="coefficients"/> [c], against base log-probabilities <paramref name="logSoftmaxBase"/> [V]: [c].
    /// U columns are computed <see cref="FrozenScaleReadout.ChunkElements"/> / V at a time.
    /// </summary>
    public static Tensor ExactForColumns(Tensor downColumns, Tensor coefficients, Tensor logSoftmaxBase, FrozenScaleReadout readout)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var coef = coefficients.to(readout.Device).to(readout.ComputeType);
        var lsm = logSoftmaxBase.to(readout.Device).to(readout.ComputeType).reshape(1, -1);
        var rows = ScaledRows(downColumns.to(readout.Device).to(readout.ComputeType), coef, readout);
        return ExactForRows(rows, lsm, null, readout).MoveToOuterDisposeScope();
    }

    /// <summary>Rows m_i * s * g * W_down[:, i]: [c, D] from columns [D, c] and coefficients [c].</summary>
    private static Tensor ScaledRows(Tensor downColumns, Tensor coef, FrozenScaleReadout readout) =>
        downColumns.t() * readout.ScaledNorm * coef.unsqueeze(1);

    /// <summary>
    /// score_k = delta_k[y] - logsumexp(logSoftmaxBase[base_k] + delta_k), delta_k = W_U rows_k ([K, V], the neuron term
    /// s m_i U[:, i] kept apart from the base logits), chunked over K. <paramref name="baseIndex"/> null: row 0 of the base.
    /// </summary>
    private static Tensor ExactForRows(Tensor rows, Tensor logSoftmaxBase, Tensor? baseIndex, FrozenScaleReadout readout)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long K = rows.shape[0];
        long chunk = readout.RowsPerChunk;
        var parts = new List<Tensor>();
        for (long i = 0; i < K; i += chunk)
        {
            long n = Math.Min(chunk, K - i);
            var delta = nn.functional.linear(rows.narrow(0, i, n), readout.Unembedding);              // [n, V]
            var dy = delta.index_select(1, readout.TargetTensor).squeeze(1);                          // [n]
            var lsm = baseIndex is null ? logSoftmaxBase : logSoftmaxBase.index_select(0, baseIndex.narrow(0, i, n));
            parts.Add(dy - (delta + lsm).logsumexp(1));
        }
        if (parts.Count == 0) return zeros(new long[] { 0 }, readout.ComputeType, readout.Device).MoveToOuterDisposeScope();
        return (parts.Count == 1 ? parts[0] : cat(parts, 0)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// First-order score of every neuron: m_i * (s * g * (W_U[y] - E_p[W_U])) . W_down[:, i], p = softmax(logits(x_l + a_l)):
    /// two vectors per layer, no vocabulary-sized work per neuron. [L, I].
    /// </summary>
    public static Tensor FirstOrder(LastPositionActivations acts, ReadoutWeights weights, FrozenScaleReadout readout, Tensor? logSoftmaxMid = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var lsm = logSoftmaxMid ?? LogSoftmaxMid(acts, readout);
        var wu = readout.Unembedding;
        var expected = lsm.exp().matmul(wu);                                            // [L, D] E_p[W_U]
        var wy = wu.index_select(0, readout.TargetTensor);                             // [1, D]
        var r = (wy - expected) * readout.ScaledNorm;                                  // [L, D]
        var m = acts.MlpPost.to(readout.Device).to(readout.ComputeType);
        var rows = new Tensor[acts.Layers];
        for (int l = 0; l < acts.Layers; l++)
            rows[l] = r[l].unsqueeze(0).matmul(weights.DownProj[l].to(readout.Device).to(readout.ComputeType)).squeeze(0);
        return (stack(rows, 0) * m).MoveToOuterDisposeScope();
    }

    /// <summary>Exact route: every neuron exact; first-order scores alongside.</summary>
    public static NeuronTensors ExactAll(LastPositionActivations acts, ReadoutWeights weights, FrozenScaleReadout readout, Tensor? logSoftmaxMid = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var lsm = logSoftmaxMid ?? LogSoftmaxMid(acts, readout);
        var exact = Exact(acts, weights, readout, lsm);
        var fo = FirstOrder(acts, weights, readout, lsm);
        return new NeuronTensors(NeuronRoute.Exact, exact.MoveToOuterDisposeScope(), fo.MoveToOuterDisposeScope(), null);
    }

    /// <summary>
    /// Screened route: first-order score of every neuron, then exact scores of the <paramref name="k"/> neurons with the
    /// largest |first-order| over all layers. Synchronises once to group the candidates by layer.
    /// </summary>
    public static NeuronTensors Screened(LastPositionActivations acts, ReadoutWeights weights, FrozenScaleReadout readout, int k,
        Tensor? logSoftmaxMid = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long L = acts.Layers, I = acts.MlpWidth;
        var lsm = logSoftmaxMid ?? LogSoftmaxMid(acts, readout);
        var fo = FirstOrder(acts, weights, readout, lsm);
        k = (int)Math.Clamp(k, 0, L * I);
        var (_, cand) = fo.reshape(-1).abs().topk(k);
        var candSorted = cand.sort().Values;                                             // by layer, then neuron
        var counts = candSorted.div(I, RoundingMode.floor).bincount(null, L).cpu().data<long>().ToArray(); // candidates per layer
        var m = acts.MlpPost.to(readout.Device).to(readout.ComputeType);
        var rowParts = new List<Tensor>();
        long start = 0;
        for (int l = 0; l < L; l++)
        {
            // Gather this layer's candidate columns; the vocabulary work below runs once over all candidates.
            long n = counts[l];
            if (n == 0) continue;
            var cols = candSorted.narrow(0, start, n) - l * I;
            var down = weights.DownProj[l].index_select(1, cols.to(weights.DownProj[l].device)).to(readout.Device).to(readout.ComputeType);
            rowParts.Add(ScaledRows(down, m[l].index_select(0, cols), readout));
            start += n;
        }
        var scores = fo.reshape(-1).clone();
        if (rowParts.Count > 0)
        {
            var layerOf = candSorted.div(I, RoundingMode.floor);
            scores.index_copy_(0, candSorted, ExactForRows(cat(rowParts, 0), lsm, layerOf, readout));
        }
        return new NeuronTensors(NeuronRoute.Screened, scores.reshape(L, I).MoveToOuterDisposeScope(),
            fo.MoveToOuterDisposeScope(), candSorted.MoveToOuterDisposeScope());
    }
}
