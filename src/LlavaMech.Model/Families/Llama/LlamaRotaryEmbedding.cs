namespace LlavaMech.Model.Language;

/// <summary>Rotary position embedding in Hugging Face's split-half (<c>rotate_half</c>) form.</summary>
public sealed class LlamaRotaryEmbedding
{
    private readonly int _headDim;
    private readonly double _theta;

    public LlamaRotaryEmbedding(int headDim, double theta) { _headDim = headDim; _theta = theta; }

    /// <summary>cos and sin, each [T, d], in float32 then cast to <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) Compute(long seqLen, Device device, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var invFreq = 1.0 / pow(_theta, arange(0, _headDim, 2, dtype: ScalarType.Int64, device: device).to(ScalarType.Float32) / _headDim); // [d/2]
        var pos = arange(seqLen, dtype: ScalarType.Float32, device: device);                   // [T]
        var freqs = outer(pos, invFreq);                                                         // [T, d/2]
        var emb = cat([freqs, freqs], -1);                                                       // [T, d]
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>x * cos + rotate_half(x) * sin for x [B, heads, T, d].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = cat([-x2, x1], -1);
        return x * cos + rotated * sin;
    }
}
