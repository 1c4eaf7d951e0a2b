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
/// takes U a chunk of columns at a time from <see cref="UnembeddedDirections"/> (kept across examples), and
/// scores = delta_y - logsumexp(log_softmax(b) + delta).
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
        var all = Enumerable.Range(0, (int)acts.MlpWidth).Select(i => (long)i).ToArray();
        var rows = new Tensor[acts.Layers];
        for (int l = 0; l < acts.Layers; l++)
            rows[l] = ExactForLayer(weights, readout, l, all, m[l], lsm[l]);
        return stack(rows, 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Exact scores of the neurons <paramref name="neurons"/> of <paramref name="layer"/> with coefficients
    /// <paramref name="coefficients"/> [n], against base log-probabilities <paramref name="logSoftmaxBase"/> [V]: [n].
    /// score = delta[y] - logsumexp(logSoftmaxBase + delta), delta = s m_i U[:, i] (the neuron term kept apart from the base
    /// logits); U rows come from <see cref="UnembeddedDirections"/>, <see cref="FrozenScaleReadout.RowsPerChunk"/> at a time.
    /// </summary>
    private static Tensor ExactForLayer(ReadoutWeights weights, FrozenScaleReadout readout, int layer, long[] neurons,
        Tensor coefficients, Tensor logSoftmaxBase)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var coef = coefficients.to(readout.Device).to(readout.ComputeType) * readout.ScaleTensor;
        var lsm = logSoftmaxBase.to(readout.Device).to(readout.ComputeType).reshape(1, -1);
        long chunk = readout.RowsPerChunk;
        var parts = new List<Tensor>();
        for (long i = 0; i < neurons.LongLength; i += chunk)
        {
            int n = (int)Math.Min(chunk, neurons.LongLength - i);
            var u = UnembeddedDirections.Neurons(weights.Directions, weights, readout, layer, neurons[(int)i..((int)i + n)]); // [n, V]
            var delta = u * coef.narrow(0, i, n).unsqueeze(1);                                           // [n, V]
            var dy = delta.index_select(1, readout.TargetTensor).squeeze(1);                              // [n]
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
        var flat = candSorted.cpu().data<long>().ToArray();                            // by layer, then neuron
        var counts = new long[L];                                                        // candidates per layer
        foreach (var c in flat) counts[c / I]++;
        var m = acts.MlpPost.to(readout.Device).to(readout.ComputeType);
        var exactParts = new List<Tensor>();
        long start = 0;
        for (int l = 0; l < L; l++)
        {
            // This layer's candidates (the sorted list is grouped by layer).
            long n = counts[l];
            if (n == 0) continue;
            var cols = flat[(int)start..(int)(start + n)].Select(c => c - l * I).ToArray();
            exactParts.Add(ExactForLayer(weights, readout, l, cols, m[l].index_select(0, tensor(cols, device: readout.Device)), lsm[l]));
            start += n;
        }
        var scores = fo.reshape(-1).clone();
        if (exactParts.Count > 0) scores.index_copy_(0, candSorted, cat(exactParts, 0));
        return new NeuronTensors(NeuronRoute.Screened, scores.reshape(L, I).MoveToOuterDisposeScope(),
            fo.MoveToOuterDisposeScope(), candSorted.MoveToOuterDisposeScope());
    }
}
