namespace LlavaMech.Analysis;

/// <summary>
/// Per-head and per-position decomposition of the attention output at the last position:
/// c_{l,h,p} = A_{l,h}[t,p] * (V_{l,kv(h)}[p] @ W_O[:, h*d:(h+1)*d]^T), kv(h) = h / (H / KV) (grouped-query attention).
/// Summing over p gives the per-head contribution c_{l,h}; summing over h gives a_l.
/// </summary>
public static class HeadContributions
{
    /// <summary>
    /// c_{l,h} = sum_p A[t,p] V_{l,kv(h)}[p] @ W_O[:, h-block]^T for every layer and head: [L, H, D] in
    /// <paramref name="computeType"/> on the device of the o_proj weights.
    /// </summary>
    public static Tensor PerHead(LastPositionActivations acts, ReadoutWeights weights, ScalarType computeType = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int L = acts.Layers, H = weights.NumHeads, KV = weights.NumKeyValueHeads, G = H / KV;
        long T = acts.Positions, d = acts.HeadDim, D = acts.Hidden;
        var dev = weights.OProj[0].device;
        var pattern = acts.PatternLastRow.to(dev).to(computeType);
        var values = acts.Values.to(dev).to(computeType);
        var perLayer = new Tensor[L];
        for (int l = 0; l < L; l++)
        {
            // z[h] = sum_p A[h, p] V[p, kv(h)] : group the H query heads by the key/value head they read.
            var a = pattern[l].reshape(KV, G, T);                         // [KV, G, T]
            var v = values[l].permute(1, 0, 2);                           // [KV, T, d]
            var z = bmm(a, v).reshape(H, d);                              // [H, d]
            var wo = weights.OProj[l].to(computeType).reshape(D, H, d);   // [D, H, d] (view of [D, H*d])
            perLayer[l] = einsum("hk,dhk->hd", z, wo);                    // [H, D]
        }
        return stack(perLayer, 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// c_{l,h,p} for every position p of each head in <paramref name="heads"/>: [K, T, D], K = heads.Count, in
    /// <paramref name="computeType"/>. The loop over the K chosen heads only gathers views; the products are one bmm.
    /// </summary>
    public static Tensor PerPosition(LastPositionActivations acts, ReadoutWeights weights, IReadOnlyList<HeadIndex> heads,
        ScalarType computeType = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int H = weights.NumHeads, KV = weights.NumKeyValueHeads, G = H / KV;
        long d = acts.HeadDim;
        var dev = weights.OProj[0].device;
        if (heads.Count == 0) return zeros(new long[] { 0, acts.Positions, acts.Hidden }, computeType, dev).MoveToOuterDisposeScope();
        var weighted = new Tensor[heads.Count];
        var blocks = new Tensor[heads.Count];
        for (int k = 0; k < heads.Count; k++)
        {
            var (l, h) = heads[k];
            if (l < 0 || l >= acts.Layers || h < 0 || h >= H) throw new ArgumentOutOfRangeException(nameof(heads), $"head {l}_{h} outside [0, {acts.Layers}) x [0, {H})");
            var a = acts.PatternLastRow[l, h].to(dev).to(computeType);                 // [T]
            var v = acts.Values[l].select(1, h / G).to(dev).to(computeType);            // [T, d]
            weighted[k] = a.unsqueeze(1) * v;                                           // [T, d]
            blocks[k] = weights.OProj[l].narrow(1, h * d, d).to(computeType).t();       // [d, D]
        }
        return bmm(stack(weighted, 0), stack(blocks, 0)).MoveToOuterDisposeScope();     // [K, T, D]
    }
}
