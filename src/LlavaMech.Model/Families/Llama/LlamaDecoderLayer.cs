namespace LlavaMech.Model.Language;

/// <summary>Pre-norm decoder layer: x + attn(norm(x)), then + mlp(norm(.)).</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    private readonly LlamaRMSNorm input_layernorm;
    private readonly LlamaAttention self_attn;
    private readonly LlamaRMSNorm post_attention_layernorm;
    private readonly LlamaMLP mlp;
    private readonly int _layer;
    private readonly string _hookPre, _hookAttnOut, _hookMid, _hookMlpOut, _hookPost;

    public LlamaDecoderLayer(int layer, Checkpoints.LlamaConfig c, Device device, ScalarType dtype) : base(nameof(LlamaDecoderLayer))
    {
        _layer = layer;
        _hookPre = HookNames.ResidPre(layer); _hookAttnOut = HookNames.AttnOut(layer); _hookMid = HookNames.ResidMid(layer);
        _hookMlpOut = HookNames.MlpOut(layer); _hookPost = HookNames.ResidPost(layer);
        input_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        self_attn = new LlamaAttention(layer, c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.AttentionBias, device, dtype, c.SlidingWindow);
        post_attention_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        mlp = new LlamaMLP(layer, c.HiddenSize, c.IntermediateSize, c.MlpBias, c.HiddenAct, device, dtype);
        RegisterComponents();
    }

    public LlamaAttention SelfAttn => self_attn;
    public LlamaMLP Mlp => mlp;

    /// <param name="x">[B, T, D] residual stream x_l.</param>
    /// <param name="hooks">the pass's hook consumers, or null.</param>
    /// <param name="prefix">a reused prefix (x then holds the positions after it), or null.</param>
    /// <returns>[B, T, D] x_{l+1}.</returns>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, HookPass? hooks, DecoderPrefix? prefix = null)
    {
        var (pk, pv) = prefix is null ? (null, null) : (prefix.Keys[_layer], prefix.Values[_layer]);
        if (hooks is null)
        {
            var a = x + self_attn.Forward(input_layernorm.call(x), cos, sin, null, pk, pv);
            return a + mlp.Forward(post_attention_layernorm.call(a), null);
        }
        x = hooks.Apply(_hookPre, x, _layer);
        var attnOut = hooks.Apply(_hookAttnOut, self_attn.Forward(input_layernorm.call(x), cos, sin, hooks, pk, pv), _layer);
        var mid = hooks.Apply(_hookMid, x + attnOut, _layer);
        var mlpOut = hooks.Apply(_hookMlpOut, mlp.Forward(post_attention_layernorm.call(mid), hooks), _layer);
        return hooks.Apply(_hookPost, mid + mlpOut, _layer);
    }
}
