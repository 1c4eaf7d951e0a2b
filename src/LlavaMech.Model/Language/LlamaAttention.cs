using LlavaMech.Hooks;
using LlavaMech.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Model.Language;

/// <summary>
/// Causal self-attention with rotary embeddings and grouped-query attention: query head h reads
/// key/value head h / (H / KV). Runs the fused kernel unless the caller captures the pattern;
/// a pattern captured for a few query rows (the last, say) is computed for those rows alone.
/// </summary>
public sealed class LlamaAttention : nn.Module
{
    private readonly Linear q_proj; // [H*d, D]
    private readonly Linear k_proj; // [KV*d, D]
    private readonly Linear v_proj; // [KV*d, D]
    private readonly Linear o_proj; // [D, H*d]
    private readonly int _layer, _heads, _kvHeads, _headDim;

    public LlamaAttention(int layer, long hidden, int heads, int kvHeads, int headDim, bool bias, Device device, ScalarType dtype) : base(nameof(LlamaAttention))
    {
        _layer = layer; _heads = heads; _kvHeads = kvHeads; _headDim = headDim;
        q_proj = new Linear(hidden, heads * headDim, bias, device, dtype);
        k_proj = new Linear(hidden, kvHeads * headDim, bias, device, dtype);
        v_proj = new Linear(hidden, kvHeads * headDim, bias, device, dtype);
        o_proj = new Linear(heads * headDim, hidden, bias, device, dtype);
        RegisterComponents();
    }

    public Linear OProj => o_proj;

    /// <param name="x">[B, T, D] input-normed residual stream.</param>
    /// <param name="cos">[T, d]</param><param name="sin">[T, d]</param>
    /// <returns>[B, T, D] attention block output a_l (after o_proj).</returns>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, ActivationCache? cache)
    {
        long b = x.shape[0], t = x.shape[1];
        var q = q_proj.call(x).view(b, t, _heads, _headDim).transpose(1, 2);     // [B, H, T, d]
        var k = k_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);   // [B, KV, T, d]
        var vRaw = v_proj.call(x).view(b, t, _kvHeads, _headDim);                // [B, T, KV, d]
        cache?.Offer(HookNames.AttnV(_layer), vRaw);
        var v = vRaw.transpose(1, 2);                                             // [B, KV, T, d]

        q = LlamaRotaryEmbedding.Apply(q, cos, sin);
        k = LlamaRotaryEmbedding.Apply(k, cos, sin);
        if (_kvHeads != _heads)
        {
            k = k.repeat_interleave(_heads / _kvHeads, dim: 1);                   // [B, H, T, d]
            v = v.repeat_interleave(_heads / _kvHeads, dim: 1);
        }

        string patternHook = HookNames.AttnPattern(_layer);
        Tensor context;                                                            // [B, H, T, d]
        if (cache is not null && cache.Wants(patternHook))
        {
            var rows = cache.QueryRows(patternHook, (int)t);
            if (rows is null)
            {
                var pattern = Pattern(q, k, null);                                 // [B, H, T, T] eager reference path
                cache.Put(patternHook, pattern);
                context = pattern.matmul(v);
            }
            else
            {
                var rowIdx = tensor(rows, device: x.device);
                cache.Put(patternHook, Pattern(q.index_select(2, rowIdx), k, rowIdx)); // [B, H, R, T]
                context = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
            }
        }
        else
        {
            context = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        }

        return o_proj.call(context.transpose(1, 2).reshape(b, t, _heads * _headDim));
    }

    /// <summary>softmax(q k^T / sqrt(d) + causal mask) in float32, cast back to the compute dtype.</summary>
    /// <param name="q">[B, H, R, d] queries of rows <paramref name="rows"/> (null: all T rows).</param>
    private Tensor Pattern(Tensor q, Tensor k, Tensor? rows)
    {
        long r = q.shape[2], t = k.shape[2];
        var scores = q.matmul(k.transpose(2, 3)).to(ScalarType.Float32) / Math.Sqrt(_headDim);   // [B, H, R, T]
        var queryPos = (rows ?? arange(r, device: q.device)).unsqueeze(1);                        // [R, 1]
        var keyPos = arange(t, device: q.device).unsqueeze(0);                                     // [1, T]
        scores = scores.masked_fill(keyPos > queryPos, float.NegativeInfinity);
        return scores.softmax(-1).to(q.dtype);
    }
}
