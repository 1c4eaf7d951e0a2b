namespace LlavaMech.Analysis;

/// <summary>Lens of N vectors: top-k token ids [N, k] (int64, best first), the target's rank [N] (int64, 0 = top) and log-probability [N].</summary>
public sealed record LensTensors(Tensor TopIds, Tensor TargetRank, Tensor TargetLogProb);

/// <summary>
/// The notebook's split of the residual stream at some positions before layer l (each [n, P, D] for n chosen layers):
/// resid_l = E + sum_{j&lt;l} (A_j + F_j); attention part = resid_l - E - sum_{j&lt;l} F_j; FFN part = resid_l - E - sum_{j&lt;l} A_j.
/// </summary>
public sealed record ResidualSplitTensors(int[] Layers, Tensor Resid, Tensor AttentionPart, Tensor FfnPart);

/// <summary>One chosen layer of the residual-stream lens.</summary>
public sealed record ResidualLensTensors(int Layer, LensTensors Resid, LensTensors AttentionPart, LensTensors FfnPart);

/// <summary>
/// The visual-token lens logits [N, V] of one image, kept for every question about it (<see cref="LogitLens.VisualTokens"/>):
/// the lens reads only the image's projector outputs, so examples that share the image share them. Owns its tensor.
/// </summary>
public sealed class SharedLensLogits : IDisposable
{
    public Tensor? Logits { get; internal set; }

    /// <summary>What of the lens does not depend on the question: the top-k ids [N, k] and each row's log-sum-exp [N], so that a
    /// later question computes only its target's rank and log-probability (one comparison pass over the logits).</summary>
    public Tensor? TopIds { get; internal set; }
    public Tensor? LogSumExp { get; internal set; }

    /// <summary>Bytes the logits of <paramref name="rows"/> image tokens take over <paramref name="vocab"/> tokens in float32, with
    /// their top-5 ids and log-sum-exp.</summary>
    public static long BytesFor(long rows, long vocab) => rows * (vocab * sizeof(float) + 5 * sizeof(long) + sizeof(float));

    public void Dispose()
    {
        Logits?.Dispose(); Logits = null;
        TopIds?.Dispose(); TopIds = null;
        LogSumExp?.Dispose(); LogSumExp = null;
    }
}

/// <summary>Logit lens of visual tokens and of the residual stream at image positions.</summary>
public static class LogitLens
{
    /// <summary>W_U (g * x / sqrt(mean(x^2) + eps)) with each row's own RMS: [N, V] (or [V]).</summary>
    public static Tensor OwnNormLogits(Tensor x, FrozenScaleReadout readout)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var v = x.to(readout.Device).to(readout.ComputeType);
        var z = v * (v.pow(2).mean(new long[] { -1 }, keepdim: true) + readout.Eps).rsqrt() * readout.Norm;
        return nn.functional.linear(z, readout.Unembedding).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Lens of x [N, D], chunked over rows: with <paramref name="ownNorm"/> each row through the final norm with its own
    /// RMS, otherwise through the frozen-scale unembedding (s of the real pass).
    /// </summary>
    public static LensTensors Project(Tensor x, FrozenScaleReadout readout, bool ownNorm, int topK = 5) =>
        Read(x, readout, topK, (xc, _) => ownNorm ? OwnNormLogits(xc, readout) : nn.functional.linear(xc * readout.ScaledNorm, readout.Unembedding));

    /// <summary>The lens of x [N, D] read from <paramref name="logitsOf"/>(rows of x, first row index), chunk by chunk.</summary>
    private static LensTensors Read(Tensor x, FrozenScaleReadout readout, int topK, Func<Tensor, long, Tensor> logitsOf)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var v = x.to(readout.Device).to(readout.ComputeType).reshape(-1, readout.Hidden);
        long n = v.shape[0], rows = readout.RowsPerChunk;
        int k = (int)Math.Min(topK, readout.Vocab);
        var ids = new List<Tensor>();
        var ranks = new List<Tensor>();
        var lps = new List<Tensor>();
        for (long i = 0; i < n; i += rows)
        {
            var logits = logitsOf(v.narrow(0, i, Math.Min(rows, n - i)), i);
            var ly = logits.index_select(1, readout.TargetTensor);                      // [n, 1]
            ids.Add(logits.topk(k, 1).Item2);
            ranks.Add((logits > ly).sum(1, type: ScalarType.Int64));
            lps.Add(ly.squeeze(1) - logits.logsumexp(1));
        }
        if (ids.Count == 0)
            return new LensTensors(zeros(new long[] { 0, k }, ScalarType.Int64, readout.Device).MoveToOuterDisposeScope(),
                zeros(new long[] { 0 }, ScalarType.Int64, readout.Device).MoveToOuterDisposeScope(),
                zeros(new long[] { 0 }, readout.ComputeType, readout.Device).MoveToOuterDisposeScope());
        return new LensTensors(cat(ids, 0).MoveToOuterDisposeScope(), cat(ranks, 0).MoveToOuterDisposeScope(),
            cat(lps, 0).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Logit lens of visual tokens: projector outputs e_p [P, D] through the final norm with their own RMS and W_U; top-k
    /// ids per position, and the readout target's rank and log-probability.
    /// </summary>
    /// <param name="shared">what the examples of one image share (the lens of the image, not of the question): the logits, top
    /// ids and log-sum-exp, made by the first example chunk by chunk as without it; each example then reads its target's rank
    /// and log-probability from them. Null: computed for this example alone.</param>
    public static LensTensors VisualTokens(Tensor imageFeatures, FrozenScaleReadout readout, int topK = 5, SharedLensLogits? shared = null)
    {
        if (shared is null) return Project(imageFeatures, readout, ownNorm: true, topK);
        if (shared.Logits is null && !Fill(shared, imageFeatures, readout, topK)) return Project(imageFeatures, readout, ownNorm: true, topK);
        return FromShared(shared, readout);
    }

    /// <summary>
    /// The image's part of the lens, made once (by its first question): the logits [N, V] chunk by chunk as <see cref="Read"/>
    /// makes them, each row's top-k ids and log-sum-exp. False (nothing kept) for an image without tokens.
    /// </summary>
    private static bool Fill(SharedLensLogits shared, Tensor imageFeatures, FrozenScaleReadout readout, int topK)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var v = imageFeatures.to(readout.Device).to(readout.ComputeType).reshape(-1, readout.Hidden);
        long n = v.shape[0], rows = readout.RowsPerChunk;
        if (n == 0) return false;
        int k = (int)Math.Min(topK, readout.Vocab);
        var logits = new List<Tensor>();
        var ids = new List<Tensor>();
        var lse = new List<Tensor>();
        for (long i = 0; i < n; i += rows)
        {
            var l = OwnNormLogits(v.narrow(0, i, Math.Min(rows, n - i)), readout);
            logits.Add(l);
            ids.Add(l.topk(k, 1).Item2);
            lse.Add(l.logsumexp(1));
        }
        shared.Logits = cat(logits, 0).DetachFromDisposeScope();
        shared.TopIds = cat(ids, 0).DetachFromDisposeScope();
        shared.LogSumExp = cat(lse, 0).DetachFromDisposeScope();
        return true;
    }

    /// <summary>A question's lens of a shared image: the kept top ids and log-sum-exp, and its target's rank and
    /// log-probability from the kept logits, the formulas of <see cref="Read"/> chunk by chunk.</summary>
    private static LensTensors FromShared(SharedLensLogits shared, FrozenScaleReadout readout)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = shared.Logits!;
        long n = logits.shape[0], rows = readout.RowsPerChunk;
        var ranks = new List<Tensor>();
        var lps = new List<Tensor>();
        for (long i = 0; i < n; i += rows)
        {
            long m = Math.Min(rows, n - i);
            var chunk = logits.narrow(0, i, m).to(readout.ComputeType);
            var ly = chunk.index_select(1, readout.TargetTensor);                      // [m, 1]
            ranks.Add((chunk > ly).sum(1, type: ScalarType.Int64));
            lps.Add(ly.squeeze(1) - shared.LogSumExp!.narrow(0, i, m));
        }
        return new LensTensors(shared.TopIds!.clone().MoveToOuterDisposeScope(), cat(ranks, 0).MoveToOuterDisposeScope(),
            cat(lps, 0).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The notebook's split at the chosen <paramref name="layers"/> (0..L; L is the final residual before the norm),
    /// from embeddings E [P, D] and per-layer attention outputs A [L, P, D] and MLP outputs F [L, P, D] at the same
    /// positions. The loop runs over layers only, keeping two running sums.
    /// </summary>
    public static ResidualSplitTensors ResidualSplit(Tensor embeddings, Tensor attnOut, Tensor mlpOut, IReadOnlyList<int> layers,
        ScalarType computeType = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long L = attnOut.shape[0];
        var chosen = layers.ToArray();
        foreach (var l in chosen)
            if (l < 0 || l > L) throw new ArgumentOutOfRangeException(nameof(layers), $"layer {l} outside [0, {L}]");
        var e = embeddings.to(computeType);
        var sumA = zeros_like(e);
        var sumF = zeros_like(e);
        var resid = new Tensor[chosen.Length];
        var attn = new Tensor[chosen.Length];
        var ffn = new Tensor[chosen.Length];
        int maxLayer = chosen.Length == 0 ? 0 : chosen.Max();
        for (int l = 0; l <= maxLayer; l++)
        {
            for (int c = 0; c < chosen.Length; c++)
            {
                if (chosen[c] != l) continue;
                var r = e + sumA + sumF;
                resid[c] = r;
                attn[c] = r - e - sumF;
                ffn[c] = r - e - sumA;
            }
            if (l < maxLayer)
            {
                sumA = sumA + attnOut[l].to(computeType);
                sumF = sumF + mlpOut[l].to(computeType);
            }
        }
        if (chosen.Length == 0)
        {
            var empty = zeros(new long[] { 0, e.shape[0], e.shape[1] }, computeType, e.device);
            return new ResidualSplitTensors(chosen, empty.MoveToOuterDisposeScope(), empty.clone().MoveToOuterDisposeScope(), empty.clone().MoveToOuterDisposeScope());
        }
        return new ResidualSplitTensors(chosen, stack(resid, 0).MoveToOuterDisposeScope(), stack(attn, 0).MoveToOuterDisposeScope(),
            stack(ffn, 0).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Lens of the residual stream and its attention and FFN parts at the chosen layers, all through the frozen-scale
    /// unembedding as in the notebook (<paramref name="residOwnNorm"/>: the resid itself with its own RMS instead).
    /// </summary>
    public static ResidualLensTensors[] ResidualLens(Tensor embeddings, Tensor attnOut, Tensor mlpOut, IReadOnlyList<int> layers,
        FrozenScaleReadout readout, int topK = 5, bool residOwnNorm = false)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var split = ResidualSplit(embeddings.to(readout.Device), attnOut.to(readout.Device), mlpOut.to(readout.Device), layers, readout.ComputeType);
        int n = split.Layers.Length;
        long P = split.Resid.shape[1];
        var resid = Project(split.Resid, readout, residOwnNorm, topK);
        var parts = Project(cat(new[] { split.AttentionPart, split.FfnPart }, 0), readout, ownNorm: false, topK);
        var result = new ResidualLensTensors[n];
        for (int c = 0; c < n; c++)
        {
            LensTensors Slice(LensTensors t, long row) => new(
                t.TopIds.narrow(0, row * P, P).MoveToOuterDisposeScope(),
                t.TargetRank.narrow(0, row * P, P).MoveToOuterDisposeScope(),
                t.TargetLogProb.narrow(0, row * P, P).MoveToOuterDisposeScope());
            result[c] = new ResidualLensTensors(split.Layers[c], Slice(resid, c), Slice(parts, c), Slice(parts, n + c));
        }
        return result;
    }
}
