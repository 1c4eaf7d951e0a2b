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

    /// <param name="x">[B, Q, D] input-normed residual stream at the positions this pass computes (Q = T without a prefix).</param>
    /// <param name="cos">[T, d]</param><param name="sin">[T, d]: the whole sequence's, a reused prefix included.</param>
    /// <param name="hooks">the pass's hook consumers, or null.</param>
    /// <param name="prefixKeys">a reused prefix's keys [1, P, KV, d] before the rotary embedding (null: none); with them, x holds
    /// positions P..T-1, hook_k and hook_v see all T positions (the prefix's first) and the query rows are offset by P.</param>
    /// <param name="prefixValues">the prefix's values [1, P, KV, d].</param>
    /// <returns>[B, Q, D] attention block output a_l (after o_proj).</returns>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, HookPass? hooks, Tensor? prefixKeys = null, Tensor? prefixValues = null)
    {
        long b = x.shape[0], q_len = x.shape[1];
        long p = prefixKeys?.shape[1] ?? 0, t = p + q_len;
        var qRaw = q_proj.call(x).view(b, q_len, _heads, _headDim);              // [B, Q, H, d]
        var kRaw = k_proj.call(x).view(b, q_len, _kvHeads, _headDim);            // [B, Q, KV, d]
        var vRaw = v_proj.call(x).view(b, q_len, _kvHeads, _headDim);            // [B, Q, KV, d]
        if (p > 0)
        {
            kRaw = cat([prefixKeys!.to(kRaw.dtype).expand(b, -1, -1, -1), kRaw], 1);   // [B, T, KV, d]
            vRaw = cat([prefixValues!.to(vRaw.dtype).expand(b, -1, -1, -1), vRaw], 1);
        }
        if (hooks is not null)
        {
            qRaw = hooks.Apply(_hookQ, qRaw, _layer);
            kRaw = hooks.Apply(_hookK, kRaw, _layer);
            vRaw = hooks.Apply(_hookV, vRaw, _layer);
        }
        var (qCos, qSin) = p == 0 ? (cos, sin) : (cos.narrow(0, p, q_len), sin.narrow(0, p, q_len));
        var q = LlamaRotaryEmbedding.Apply(qRaw.transpose(1, 2), qCos, qSin);    // [B, H, Q, d]
        var k = LlamaRotaryEmbedding.Apply(kRaw.transpose(1, 2), cos, sin);      // [B, KV, T, d]
        var v = vRaw.transpose(1, 2);                                             // [B, KV, T, d]
        if (_kvHeads != _heads)
        {
            k = k.repeat_interleave(_heads / _kvHeads, dim: 1);                   // [B, H, T, d]
            v = v.repeat_interleave(_heads / _kvHeads, dim: 1);
        }

        bool wantsScores = hooks is not null && hooks.Wants(_hookScores);
        bool wantsPattern = hooks is not null && hooks.Wants(_hookPattern);
        Tensor context;                                                            // [B, H, Q, d]
        if (wantsScores || wantsPattern)
        {
            var rows = wantsScores ? null : hooks!.Hooks.ReadOnlyRows(_hookPattern, (int)t);   // positions in the whole sequence
            if (rows is null)
            {
                var scores = Scores(q, k, arange(p, t, device: x.device));         // [B, H, Q, T] eager reference path
                if (wantsScores) scores = hooks!.Apply(_hookScores, scores, _layer);
                var pattern = scores.softmax(-1).to(q.dtype);
                if (wantsPattern) pattern = hooks!.Apply(_hookPattern, pattern, _layer);
                context = pattern.matmul(v);
            }
            else
            {
                if (rows.Any(r => r < p))
                    throw new InvalidOperationException($"the pattern of layer {_layer} is read at a query row inside the reused prefix of {p} positions");
                var rowIdx = tensor(rows, device: x.device);
                var local = p == 0 ? rowIdx : rowIdx - p;
                hooks!.Apply(_hookPattern, Scores(q.index_select(2, local), k, rowIdx).softmax(-1).to(q.dtype), _layer, rows); // [B, H, R, T], read only
                context = Fused(q, k, v, p);
            }
        }
        else
        {
            context = Fused(q, k, v, p);
        }

        var z = context.transpose(1, 2);                                           // [B, Q, H, d]
        if (hooks is not null) z = hooks.Apply(_hookZ, z, _layer);
        return o_proj.call(z.reshape(b, q_len, _heads * _headDim));
    }

    /// <summary>The fused kernel: causal, or with a boolean mask where the window is shorter than the sequence or the queries
    /// start after a reused prefix of <paramref name="offset"/> positions (query i is then position offset + i).</summary>
    private Tensor Fused(Tensor q, Tensor k, Tensor v, long offset)
    {
        long tq = q.shape[2], t = k.shape[2];
        bool windowed = _window is int w0 && w0 < t;
        if (offset == 0 && !windowed) return nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        var queryPos = arange(offset, offset + tq, device: q.device).unsqueeze(1);   // [Q, 1]
        var keyPos = arange(t, device: q.device).unsqueeze(0);                      // [1, T]
        var allowed = keyPos <= queryPos;                                            // [Q, T], true = attend
        if (_window is int w) allowed = allowed.logical_and(keyPos > queryPos - w);
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: allowed);
    }

    /// <summary>q k^T / sqrt(d) in float32 with the causal mask (and the sliding window) applied: -inf where the key is after the
    /// query or, with a window W, W or more positions before it.</summary>
    /// <param name="q">[B, H, R, d] queries at the positions <paramref name="queryPositions"/> [R] of the whole sequence.</param>
    /// <returns>[B, H, R, T]</returns>
    private Tensor Scores(Tensor q, Tensor k, Tensor queryPositions)
    {
        long t = k.shape[2];
        var scores = q.matmul(k.transpose(2, 3)).to(ScalarType.Float32) / Math.Sqrt(_headDim);   // [B, H, R, T]
        var queryPos = queryPositions.unsqueeze(1);                                                // [R, 1]
        var keyPos = arange(t, device: q.device).unsqueeze(0);                                     // [1, T]
        var masked = keyPos > queryPos;
        if (_window is int w) masked = masked.logical_or(keyPos <= queryPos - w);
        return scores.masked_fill(masked, float.NegativeInfinity);
    }
}
