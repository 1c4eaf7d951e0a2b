using LlavaMech.Model.Layers;

namespace LlavaMech.Model.Language;

/// <summary>
/// Causal self-attention with rotary embeddings and grouped-query attention: query head h reads
/// key/value head h / (H / KV). Runs the fused kernel unless a hook consumer wants the scores or
/// the pattern; a pattern only read for a few query rows (the last, say) is computed for those rows alone.
/// With Mistral's sliding window W, query i sees key j only when j &lt;= i and i - j &lt; W (masking_utils'
/// sliding_window_overlay); a window at least the sequence's length is plain causal attention.
/// Hook points: hook_q, hook_k, hook_v, hook_attn_scores, hook_pattern, hook_z (see <see cref="HookNames"/>).
/// </summary>
public sealed class LlamaAttention : nn.Module
{
    private readonly Linear q_proj; // [H*d, D]
    private readonly Linear k_proj; // [KV*d, D]
    private readonly Linear v_proj; // [KV*d, D]
    private readonly Linear o_proj; // [D, H*d]
    private readonly int _layer, _heads, _kvHeads, _headDim;
    private readonly int? _window;
    private readonly string _hookQ, _hookK, _hookV, _hookScores, _hookPattern, _hookZ;

    /// <param name="slidingWindow">Mistral's sliding_window (null: plain causal attention).</param>
    public LlamaAttention(int layer, long hidden, int heads, int kvHeads, int headDim, bool bias, Device device, ScalarType dtype, int? slidingWindow = null)
        : base(nameof(LlamaAttention))
    {
        if (slidingWindow is <= 0) throw new ArgumentOutOfRangeException(nameof(slidingWindow), slidingWindow, "a sliding window is at least 1");
        _layer = layer; _heads = heads; _kvHeads = kvHeads; _headDim = headDim; _window = slidingWindow;
        _hookQ = HookNames.AttnQ(layer); _hookK = HookNames.AttnK(layer); _hookV = HookNames.AttnV(layer);
        _hookScores = HookNames.AttnScores(layer); _hookPattern = HookNames.AttnPattern(layer); _hookZ = HookNames.AttnZ(layer);
        q_proj = new Linear(hidden, heads * headDim, bias, device, dtype);
        k_proj = new Linear(hidden, kvHeads * headDim, bias, device, dtype);
        v_proj = new Linear(hidden, kvHeads * headDim, bias, device, dtype);
        o_proj = new Linear(heads * headDim, hidden, bias, device, dtype);
        RegisterComponents();
    }

    public Linear OProj => o_proj;
    public int Heads => _heads;
    public int KeyValueHeads => _kvHeads;
    public int HeadDim => _headDim;
    /// <summary>The sliding window W (null: none).</summary>
    public int? SlidingWindow => _window;

    /// <param name="x">[B, T, D] input-normed residual stream.</param>
    /// <param name="cos">[T, d]</param><param name="sin">[T, d]</param>
    /// <param name="hooks">the pass's hook consumers, or null.</param>
    /// <returns>[B, T, D] attention block output a_l (after o_proj).</returns>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, HookPass? hooks)
    {
        long b = x.shape[0], t = x.shape[1];
        var qRaw = q_proj.call(x).view(b, t, _heads, _headDim);                  // [B, T, H, d]
        var kRaw = k_proj.call(x).view(b, t, _kvHeads, _headDim);                // [B, T, KV, d]
        var vRaw = v_proj.call(x).view(b, t, _kvHeads, _headDim);                // [B, T, KV, d]
        if (hooks is not null)
        {
            qRaw = hooks.Apply(_hookQ, qRaw, _layer);
            kRaw = hooks.Apply(_hookK, kRaw, _layer);
            vRaw = hooks.Apply(_hookV, vRaw, _layer);
        }
        var q = LlamaRotaryEmbedding.Apply(qRaw.transpose(1, 2), cos, sin);      // [B, H, T, d]
        var k = LlamaRotaryEmbedding.Apply(kRaw.transpose(1, 2), cos, sin);      // [B, KV, T, d]
        var v = vRaw.transpose(1, 2);                                             // [B, KV, T, d]
        if (_kvHeads != _heads)
        {
            k = k.repeat_interleave(_heads / _kvHeads, dim: 1);                   // [B, H, T, d]
            v = v.repeat_interleave(_heads / _kvHeads, dim: 1);
        }

        bool wantsScores = hooks is not null && hooks.Wants(_hookScores);
        bool wantsPattern = hooks is not null && hooks.Wants(_hookPattern);
        Tensor context;                                                            // [B, H, T, d]
        if (wantsScores || wantsPattern)
        {
            var rows = wantsScores ? null : hooks!.Hooks.ReadOnlyRows(_hookPattern, (int)t);
            if (rows is null)
            {
                var scores = Scores(q, k, null);                                   // [B, H, T, T] eager reference path
                if (wantsScores) scores = hooks!.Apply(_hookScores, scores, _layer);
                var pattern = scores.softmax(-1).to(q.dtype);
                if (wantsPattern) pattern = hooks!.Apply(_hookPattern, pattern, _layer);
                context = pattern.matmul(v);
            }
            else
            {
                var rowIdx = tensor(rows, device: x.device);
                hooks!.Apply(_hookPattern, Scores(q.index_select(2, rowIdx), k, rowIdx).softmax(-1).to(q.dtype), _layer, rows); // [B, H, R, T], read only
                context = Fused(q, k, v);
            }
        }
        else
        {
            context = Fused(q, k, v);
        }

        var z = context.transpose(1, 2);                                           // [B, T, H, d]
        if (hooks is not null) z = hooks.Apply(_hookZ, z, _layer);
        return o_proj.call(z.reshape(b, t, _heads * _headDim));
    }

    /// <summary>The fused kernel: causal, or with the sliding window's boolean mask where the window is shorter than the sequence.</summary>
    private Tensor Fused(Tensor q, Tensor k, Tensor v)
    {
        long t = q.shape[2];
        if (_window is not int w || w >= t) return nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        var queryPos = arange(t, device: q.device).unsqueeze(1);
        var keyPos = arange(t, device: q.device).unsqueeze(0);
        var allowed = (keyPos <= queryPos).logical_and(keyPos > queryPos - w);   // [T, T], true = attend
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: allowed);
    }

    /// <summary>q k^T / sqrt(d) in float32 with the causal mask (and the sliding window) applied: -inf where the key is after the
    /// query or, with a window W, W or more positions before it.</summary>
    /// <param name="q">[B, H, R, d] queries of rows <paramref name="rows"/> (null: all T rows).</param>
    /// <returns>[B, H, R, T]</returns>
    private Tensor Scores(Tensor q, Tensor k, Tensor? rows)
    {
        long r = q.shape[2], t = k.shape[2];
        var scores = q.matmul(k.transpose(2, 3)).to(ScalarType.Float32) / Math.Sqrt(_headDim);   // [B, H, R, T]
        var queryPos = (rows ?? arange(r, device: q.device)).unsqueeze(1);                        // [R, 1]
        var keyPos = arange(t, device: q.device).unsqueeze(0);                                     // [1, T]
        var masked = keyPos > queryPos;
        if (_window is int w) masked = masked.logical_or(keyPos <= queryPos - w);
        return scores.masked_fill(masked, float.NegativeInfinity);
    }
}
