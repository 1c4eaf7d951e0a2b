namespace LlavaMech.Analysis;

/// <summary>Layer, attention-block, FFN-block, head and position log-probability increases (docs/METHOD.md, "The statistics"), batched as [N, D] readouts.</summary>
public static class LogProbIncrease
{
    /// <summary>Layer results: attention and FFN increases [L] each, and logp of x_l, x_l + a_l, x_l + a_l + f_l [L] each.</summary>
    public sealed record LayerTensors(Tensor Attention, Tensor Ffn, Tensor LogProbPre, Tensor LogProbMid, Tensor LogProbPost);

    /// <summary>
    /// attention: logp(x_l + a_l) - logp(x_l); FFN: logp(x_l + a_l + f_l) - logp(x_l + a_l), for every layer, in one readout of [3L, D].
    /// </summary>
    public static LayerTensors Layers(LastPositionActivations acts, FrozenScaleReadout readout)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long L = acts.Layers;
        var (x, mid, post) = Streams(acts, readout);
        var lp = readout.LogProb(cat(new[] { x, mid, post }, 0));
        var lpx = lp.narrow(0, 0, L);
        var lpm = lp.narrow(0, L, L);
        var lpp = lp.narrow(0, 2 * L, L);
        var r = new LayerTensors(lpm - lpx, lpp - lpm, lpx, lpm, lpp);
        return Move(r);
    }

    /// <summary>Head increase logp(x_l + c_{l,h}) - logp(x_l): [L, H].</summary>
    public static Tensor Heads(LastPositionActivations acts, ReadoutWeights weights, FrozenScaleReadout readout)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long L = acts.Layers, H = weights.NumHeads;
        var c = HeadContributions.PerHead(acts, weights, readout.ComputeType).to(readout.Device);     // [L, H, D]
        var x = acts.ResidPre.to(readout.Device).to(readout.ComputeType);
        var lp = readout.LogProb(cat(new[] { x, (x.unsqueeze(1) + c).reshape(L * H, -1) }, 0));
        return (lp.narrow(0, L, L * H).reshape(L, H) - lp.narrow(0, 0, L).unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Position increase logp(x_l + c_{l,h,p}) - logp(x_l) for every position p of each head in <paramref name="heads"/>: [K, T].
    /// <paramref name="logProbPre"/> ([L], logp(x_l)) and <paramref name="logitsPre"/> ([L, V], logits(x_l)) may be passed
    /// to skip recomputing them.
    /// </summary>
    public static Tensor Positions(LastPositionActivations acts, ReadoutWeights weights, FrozenScaleReadout readout,
        IReadOnlyList<HeadIndex> heads, Tensor? logProbPre = null, Tensor? logitsPre = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long T = acts.Positions;
        if (heads.Count == 0) return zeros(new long[] { 0, T }, readout.ComputeType, readout.Device).MoveToOuterDisposeScope();
        int H = weights.NumHeads, G = H / weights.NumKeyValueHeads;
        long d = acts.HeadDim;
        var dev = readout.Device;
        foreach (var (l, h) in heads)
            if (l < 0 || l >= acts.Layers || h < 0 || h >= H) throw new ArgumentOutOfRangeException(nameof(heads), $"head {l}_{h} outside [0, {acts.Layers}) x [0, {H})");
        // The heads' directions a group at a time (as many as one readout chunk holds): one product over W_U per group.
        int group = (int)Math.Max(1, readout.RowsPerChunk / d);
        Tensor[] directions = [];
        var rows = new Tensor[heads.Count];
        for (int k = 0; k < heads.Count; k++)
        {
            if (k % group == 0)
            {
                foreach (var t in directions) t.Dispose();
                directions = UnembeddedDirections.Heads(weights.Directions, weights, readout, heads.Skip(k).Take(group).ToArray());   // [d, V] each
            }
            var (l, h) = heads[k];
            // logits(x + c_p) = logits(x) + s A[t,p] M V_p with M = W_U diag(g) W_O[:, head]: one [V, d] matrix per head
            // instead of a [V, D] product per position (D/d times less work), and M is the model's, kept across examples.
            var x = acts.ResidPre[l].to(dev).to(readout.ComputeType);                                       // [D]
            var baseLogits = logitsPre is null ? readout.Logits(x.unsqueeze(0))
                : logitsPre[l].to(dev).to(readout.ComputeType).unsqueeze(0);                              // [1, V]
            var mT = directions[k % group];                                                                  // [d, V]
            var a = acts.PatternLastRow[l, h].to(dev).to(readout.ComputeType);                              // [T]
            var v = acts.Values[l].select(1, h / G).to(dev).to(readout.ComputeType);                       // [T, d]
            var weighted = a.unsqueeze(1) * v * readout.ScaleTensor;                                      // [T, d]
            var parts = new List<Tensor>();
            for (long i = 0; i < T; i += readout.RowsPerChunk)
            {
                var logits = baseLogits + weighted.narrow(0, i, Math.Min(readout.RowsPerChunk, T - i)).matmul(mT); // [n, V]
                parts.Add(logits.index_select(1, readout.TargetTensor).squeeze(1) - logits.logsumexp(1));
            }
            rows[k] = parts.Count == 1 ? parts[0] : cat(parts, 0);
        }
        var layerIdx = tensor(heads.Select(hh => (long)hh.Layer).ToArray(), device: dev);
        var lpx = logProbPre is null
            ? readout.LogProb(acts.ResidPre.to(dev).to(readout.ComputeType).index_select(0, layerIdx))
            : logProbPre.to(dev).to(readout.ComputeType).index_select(0, layerIdx);
        return (stack(rows, 0) - lpx.unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The <paramref name="k"/> heads with the largest increase, best first; ties go to the lower layer, then the lower
    /// head (a stable descending sort of the flattened [L, H] scores). Synchronises to read the k indices.
    /// </summary>
    public static HeadIndex[] TopHeads(Tensor headIncrease, int k)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long H = headIncrease.shape[1];
        var flat = headIncrease.reshape(-1);
        k = (int)Math.Min(k, flat.shape[0]);
        if (k <= 0) return Array.Empty<HeadIndex>();
        var (_, order) = flat.sort(0, descending: true, stable: true);
        var idx = order.narrow(0, 0, k).cpu().data<long>().ToArray();
        return idx.Select(i => new HeadIndex((int)(i / H), (int)(i % H))).ToArray();
    }

    /// <summary>x_l, x_l + a_l, x_l + a_l + f_l as [L, D] each, in the readout's dtype and device.</summary>
    public static (Tensor Pre, Tensor Mid, Tensor Post) Streams(LastPositionActivations acts, FrozenScaleReadout readout)
    {
        var x = acts.ResidPre.to(readout.Device).to(readout.ComputeType);
        var a = acts.AttnOut.to(readout.Device).to(readout.ComputeType);
        var f = acts.MlpOut.to(readout.Device).to(readout.ComputeType);
        var mid = x + a;
        return (x, mid, mid + f);
    }

    private static LayerTensors Move(LayerTensors r) => new(
        r.Attention.MoveToOuterDisposeScope(), r.Ffn.MoveToOuterDisposeScope(), r.LogProbPre.MoveToOuterDisposeScope(),
        r.LogProbMid.MoveToOuterDisposeScope(), r.LogProbPost.MoveToOuterDisposeScope());
}
