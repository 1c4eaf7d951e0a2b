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

/// <summary>
/// Neuron options. <see cref="ScreenK"/> candidates are taken over all L*I neurons together. <see cref="Keep"/>: how many
/// of the highest exact scores the caller keeps (null: all candidates are scored). With it, the screened route scores the
/// candidates in descending first-order order and stops once none left can enter the kept ones: a neuron's exact score
/// is at most its first-order score (Jensen), so the kept neurons and their scores are those of scoring every candidate.
/// </summary>
public sealed record NeuronOptions(
    NeuronRoute Route = NeuronRoute.Auto,
    int ScreenK = 1024,
    long ExactBudget = NeuronOptions.DefaultExactBudget,
    int? Keep = null)
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
            NeuronRoute.Screened => Screened(acts, weights, readout, options.ScreenK, logSoftmaxMid, options.Keep),
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
            rows[l] = ExactFor(weights, readout, Enumerable.Repeat(l, all.Length).ToArray(), all, m[l], lsm);
        return stack(rows, 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Exact scores of the neurons <paramref name="neurons"/> of the layers <paramref name="layers"/> (pairwise) with
    /// coefficients <paramref name="coefficients"/> [n], against each layer's base log-probabilities
    /// <paramref name="logSoftmaxBase"/> [L, V]: [n]. score = delta[y] - logsumexp(logSoftmaxBase[layer] + delta),
    /// delta = s m_i U[:, i] (the neuron term kept apart from the base logits); U rows come from
    /// <see cref="UnembeddedDirections"/>, <see cref="FrozenScaleReadout.RowsPerChunk"/> at a time, each chunk in one product
    /// whatever its layers.
    /// </summary>
    private static Tensor ExactFor(ReadoutWeights weights, FrozenScaleReadout readout, int[] layers, long[] neurons,
        Tensor coefficients, Tensor logSoftmaxBase)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var coef = coefficients.to(readout.Device).to(readout.ComputeType) * readout.ScaleTensor;
        var lsm = logSoftmaxBase.to(readout.Device).to(readout.ComputeType);
        long chunk = readout.RowsPerChunk;
        var parts = new List<Tensor>();
        for (long i = 0; i < neurons.LongLength; i += chunk)
        {
            int a = (int)i, n = (int)Math.Min(chunk, neurons.LongLength - i);
            var ls = layers[a..(a + n)];
            var u = UnembeddedDirections.Neurons(weights.Directions, weights, readout, ls, neurons[a..(a + n)]);   // [n, V]
            var delta = u * coef.narrow(0, i, n).unsqueeze(1);                                                  // [n, V]
            var dy = delta.index_select(1, readout.TargetTensor).squeeze(1);                                     // [n]
            var lsmRows = ls.All(l => l == ls[0]) ? lsm[ls[0]].unsqueeze(0)
                : lsm.index_select(0, tensor(ls.Select(l => (long)l).ToArray(), device: lsm.device));       // [1 or n, V]
            parts.Add(dy - (delta + lsmRows).logsumexp(1));
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
    /// largest |first-order| over all layers. With <paramref name="keep"/>, the candidates are scored in descending
    /// first-order order, <see cref="KeepChunk"/> at a time, until the keep-th best exact score exceeds the next
    /// candidate's first-order score (an upper bound of its exact score: log E_p[e^d] >= E_p[d]) by
    /// <see cref="BoundMargin"/>; <see cref="NeuronTensors.Candidates"/> then lists the neurons scored. The keep best
    /// are those of scoring all k.
    /// </summary>
    public static NeuronTensors Screened(LastPositionActivations acts, ReadoutWeights weights, FrozenScaleReadout readout, int k,
        Tensor? logSoftmaxMid = null, int? keep = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long L = acts.Layers, I = acts.MlpWidth;
        var lsm = logSoftmaxMid ?? LogSoftmaxMid(acts, readout);
        var fo = FirstOrder(acts, weights, readout, lsm);
        var foFlat = fo.reshape(-1);
        k = (int)Math.Clamp(k, 0, L * I);
        var (_, cand) = foFlat.abs().topk(k);
        var (foDesc, order) = foFlat.index_select(0, cand).sort(descending: true);
        var byFirstOrder = cand.index_select(0, order).cpu().data<long>().ToArray();
        var bound = foDesc.to(ScalarType.Float64).cpu().data<double>().ToArray();
        var m = acts.MlpPost.to(readout.Device).to(readout.ComputeType);
        int step = keep is int q && q > 0 ? Math.Max(KeepChunk, q + Math.Max(8, q / 2)) : Math.Max(1, k);
        var scored = new List<long>(k);
        var exactParts = new List<Tensor>();
        var best = new List<double>();
        for (int start = 0; start < k; start += step)
        {
            // This chunk's candidates (sorted by flat index: by layer, then neuron), all layers in one product.
            var chunk = byFirstOrder[start..Math.Min(k, start + step)];
            Array.Sort(chunk);
            var exact = ExactFor(weights, readout, chunk.Select(c => (int)(c / I)).ToArray(), chunk.Select(c => c % I).ToArray(),
                m.reshape(-1).index_select(0, tensor(chunk, device: readout.Device)), lsm);
            scored.AddRange(chunk);
            exactParts.Add(exact);
            int next = start + chunk.Length;
            if (keep is not int kept || kept <= 0 || next >= k) continue;
            best.AddRange(exact.to(ScalarType.Float64).cpu().data<double>());
            if (best.Count < kept) continue;
            best.Sort((x, y) => y.CompareTo(x));
            best.RemoveRange(kept, best.Count - kept);
            if (best[^1] > bound[next] + BoundMargin(best[^1], bound[next])) break;
        }
        var scores = foFlat.clone();
        var scoredTensor = tensor(scored.ToArray(), device: readout.Device);
        if (exactParts.Count > 0) scores.index_copy_(0, scoredTensor, cat(exactParts, 0));
        return new NeuronTensors(NeuronRoute.Screened, scores.reshape(L, I).MoveToOuterDisposeScope(),
            fo.MoveToOuterDisposeScope(), scoredTensor.sort().Values.MoveToOuterDisposeScope());
    }

    /// <summary>The fewest candidates scored at a time when only the best few are kept (a chunk is the kept count and half
    /// again, at least 8 more: one device round trip usually decides).</summary>
    public const int KeepChunk = 16;

    /// <summary>
    /// How far the keep-th exact score must clear the next first-order bound before the screen stops: the two are computed
    /// by different float reductions (a D-long dot product, a V-long log-sum-exp), each within about 1e-6 relative.
    /// </summary>
    public static double BoundMargin(double kept, double next) => 1e-4 * Math.Max(1.0, Math.Max(Math.Abs(kept), Math.Abs(next)));
}
