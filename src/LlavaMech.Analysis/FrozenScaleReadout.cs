namespace LlavaMech.Analysis;

/// <summary>
/// The paper's frozen-scale projection for one example: s = 1 / sqrt(mean(h_L^2) + eps) from the real pass, and for
/// any vector v, logits(v) = W_U (g * v * s), logp(v) = log_softmax(logits(v))[y]. All work runs on the device of
/// W_U in <see cref="ComputeType"/> (float32 by default; float64 is fine on CPU), whatever the weights' dtype.
/// Batched: every method takes [N, D] (or [D]) and chunks the vocabulary-sized work to
/// <see cref="ChunkElements"/> logits at a time.
/// </summary>
public sealed class FrozenScaleReadout : IDisposable
{
    /// <summary>Default bound on the number of logits materialised at once (32 Mi: 128 MiB in float32).</summary>
    public const long DefaultChunkElements = 1L << 25;

    private readonly List<Tensor> _owned = new();

    private FrozenScaleReadout(Tensor scale, Tensor norm, Tensor scaledNorm, Tensor unembedding, Tensor target,
        double eps, ScalarType computeType, long chunkElements)
    {
        ScaleTensor = scale;
        Norm = norm;
        Eps = eps;
        ScaledNorm = scaledNorm;
        Unembedding = unembedding;
        TargetTensor = target;
        ComputeType = computeType;
        ChunkElements = chunkElements;
        _owned.AddRange(new[] { scale, norm, scaledNorm, unembedding, target });
    }

    /// <summary>s as a 0-d tensor in <see cref="ComputeType"/>.</summary>
    public Tensor ScaleTensor { get; }

    /// <summary>g, the final norm weight, [D], in <see cref="ComputeType"/>.</summary>
    public Tensor Norm { get; }

    /// <summary>The model's rms_norm_eps.</summary>
    public double Eps { get; }

    /// <summary>g * s, [D], in <see cref="ComputeType"/>.</summary>
    public Tensor ScaledNorm { get; }

    /// <summary>W_U in <see cref="ComputeType"/> on its device, [V, D].</summary>
    public Tensor Unembedding { get; }

    /// <summary>The target y as a 1-element int64 tensor [1] on the device.</summary>
    public Tensor TargetTensor { get; }

    public ScalarType ComputeType { get; }
    public long ChunkElements { get; }
    public Device Device => Unembedding.device;
    public long Vocab => Unembedding.shape[0];
    public long Hidden => Unembedding.shape[1];

    /// <summary>s (synchronises with the device).</summary>
    public double Scale => ScaleTensor.to(ScalarType.Float64).cpu().item<double>();

    /// <summary>y (synchronises with the device).</summary>
    public long Target => TargetTensor.cpu().item<long>();

    /// <summary>Rows of [N, D] per vocabulary-sized chunk.</summary>
    public long RowsPerChunk => Math.Max(1, ChunkElements / Math.Max(1, Vocab));

    /// <summary>s = 1 / sqrt(mean(h^2) + eps), 0-d, computed in <paramref name="computeType"/>.</summary>
    public static Tensor FrozenScale(Tensor residFinal, double eps, ScalarType computeType = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var h = residFinal.to(computeType).reshape(-1);
        return (h.pow(2).mean() + eps).rsqrt().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Builds the readout of one example. <paramref name="targetId"/> null: the argmax of the model's last logits
    /// W_U (g * h_L * s). The returned object's tensors belong to the caller's dispose scope (if any); otherwise
    /// dispose the readout.
    /// </summary>
    public static FrozenScaleReadout Create(ReadoutWeights weights, Tensor residFinal, long? targetId = null,
        ScalarType computeType = ScalarType.Float32, long chunkElements = DefaultChunkElements)
    {
        if (computeType != ScalarType.Float32 && computeType != ScalarType.Float64)
            throw new ArgumentException("compute type must be Float32 or Float64 (logits and log-softmax are accumulated in it)", nameof(computeType));
        var dev = weights.LmHead.device;
        var wu = weights.LmHead.detach().to(computeType);
        var g = weights.FinalNorm.detach().to(dev).to(computeType);
        var s = FrozenScale(residFinal.detach().to(dev), weights.RmsNormEps, computeType);
        var gs = g * s;
        Tensor target;
        if (targetId is long id)
        {
            if (id < 0 || id >= weights.Vocab) throw new ArgumentOutOfRangeException(nameof(targetId), $"target {id} outside the vocabulary [0, {weights.Vocab})");
            target = tensor(new[] { id }, device: dev);
        }
        else
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var h = residFinal.detach().to(dev).to(computeType).reshape(1, -1);
            target = nn.functional.linear(h * gs, wu).argmax(1).reshape(1).MoveToOuterDisposeScope();
        }
        return new FrozenScaleReadout(s, g, gs, wu, target, weights.RmsNormEps, computeType, chunkElements);
    }

    private Tensor Prep(Tensor x) => x.to(Device).to(ComputeType);

    /// <summary>W_U (g * x * s) for x [N, D] (or [D]): [N, V] (or [V]). Materialises all N x V logits: keep N small.</summary>
    public Tensor Logits(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var v = Prep(x);
        return nn.functional.linear(v * ScaledNorm, Unembedding).MoveToOuterDisposeScope();
    }

    /// <summary>log_softmax(logits(x)) for x [N, D] (or [D]).</summary>
    public Tensor LogSoftmax(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return Logits(x).log_softmax(-1).MoveToOuterDisposeScope();
    }

    /// <summary>logp(x) = log_softmax(logits(x))[y] for x [N, D] -> [N] (or [D] -> 0-d), chunked over rows.</summary>
    public Tensor LogProb(Tensor x) => LogProb(x, 0, out _);

    /// <summary>
    /// <see cref="LogProb(Tensor)"/>, also keeping the logits of the first <paramref name="keepFirst"/> rows
    /// ([keepFirst, V], null when 0): later statistics that need them read them instead of another pass over W_U.
    /// </summary>
    public Tensor LogProb(Tensor x, long keepFirst, out Tensor? keptLogits)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        bool single = x.dim() == 1;
        var v = Prep(x).reshape(-1, Hidden);
        long n = v.shape[0], rows = RowsPerChunk;
        if (keepFirst < 0 || keepFirst > n) throw new ArgumentOutOfRangeException(nameof(keepFirst), $"{keepFirst} rows of {n}");
        var parts = new List<Tensor>();
        var kept = new List<Tensor>();
        for (long i = 0; i < n; i += rows)
        {
            var z = v.narrow(0, i, Math.Min(rows, n - i)) * ScaledNorm;
            var logits = nn.functional.linear(z, Unembedding);          // [n, V]
            if (i < keepFirst) kept.Add(logits.narrow(0, 0, Math.Min(logits.shape[0], keepFirst - i)));
            parts.Add(logits.index_select(1, TargetTensor).squeeze(1) - logits.logsumexp(1));
        }
        var r = parts.Count == 1 ? parts[0] : cat(parts, 0);
        if (single) r = r.reshape(Array.Empty<long>());
        keptLogits = kept.Count == 0 ? null : (kept.Count == 1 ? kept[0].clone() : cat(kept, 0)).MoveToOuterDisposeScope();
        return r.MoveToOuterDisposeScope();
    }

    /// <summary>Top-k ids of logits(x) per row and the target's rank (0 = top) and log-probability; x [N, D].</summary>
    public LensTensors Lens(Tensor x, int topK = 5) => LogitLens.Project(x, this, ownNorm: false, topK);

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}
