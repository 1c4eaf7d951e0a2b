using LlavaMech.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Model.Language;

/// <summary>Pre-norm decoder layer: x + attn(norm(x)), then + mlp(norm(.)).</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    private readonly LlamaRMSNorm input_layernorm;
    private readonly LlamaAttention self_attn;
    private readonly LlamaRMSNorm post_attention_layernorm;
    private readonly LlamaMLP mlp;
    private readonly int _layer;

    public LlamaDecoderLayer(int layer, Checkpoints.LlamaConfig c, Device device, ScalarType dtype) : base(nameof(LlamaDecoderLayer))
    {
        _layer = layer;
        input_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        self_attn = new LlamaAttention(layer, c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.AttentionBias, device, dtype);
        post_attention_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        mlp = new LlamaMLP(layer, c.HiddenSize, c.IntermediateSize, c.MlpBias, c.HiddenAct, device, dtype);
        RegisterComponents();
    }

    public LlamaAttention SelfAttn => self_attn;
    public LlamaMLP Mlp => mlp;

    /// <param name="x">[B, T, D] residual stream x_l.</param>
    /// <returns>[B, T, D] x_{l+1}.</returns>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, ActivationCache? cache)
    {
        cache?.Offer(HookNames.ResidPre(_layer), x);
        var attnOut = self_attn.Forward(input_layernorm.call(x), cos, sin, cache);
        cache?.Offer(HookNames.AttnOut(_layer), attnOut);
        var mid = x + attnOut;
        cache?.Offer(HookNames.ResidMid(_layer), mid);
        var mlpOut = mlp.Forward(post_attention_layernorm.call(mid), cache);
        cache?.Offer(HookNames.MlpOut(_layer), mlpOut);
        var post = mid + mlpOut;
        cache?.Offer(HookNames.ResidPost(_layer), post);
        return post;
    }
}
