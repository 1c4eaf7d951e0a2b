using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using LlavaMech.Model.Layers;
using Embedding = LlavaMech.Model.Layers.Embedding;
using LayerNorm = LlavaMech.Model.Layers.LayerNorm;
using Linear = LlavaMech.Model.Layers.Linear;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LlavaMech.Model.Language;

/// <summary>The Llama decoder stack: embed_tokens, layers, final norm.</summary>
public sealed class LlamaModel : nn.Module
{
    private readonly Embedding embed_tokens;                 // [V, D]
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly LlamaRMSNorm norm;                      // [D]
    private readonly LlamaRotaryEmbedding _rotary;

    public LlamaModel(LlamaConfig c, Device device, ScalarType dtype) : base(nameof(LlamaModel))
    {
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, device, dtype);
        layers = new ModuleList<LlamaDecoderLayer>();
        for (int l = 0; l < c.NumHiddenLayers; l++) layers.Add(new LlamaDecoderLayer(l, c, device, dtype));
        norm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        _rotary = new LlamaRotaryEmbedding(c.HeadDim, c.RopeTheta);
        RegisterComponents();
    }

    public Embedding EmbedTokens => embed_tokens;
    public IList<LlamaDecoderLayer> Layers => layers;
    public LlamaRMSNorm Norm => norm;

    /// <param name="embeds">[B, T, D] input embeddings.</param>
    /// <returns>[B, T, D] h_L, the last layer's output before the final norm.</returns>
    public Tensor Forward(Tensor embeds, ActivationCache? cache)
    {
        cache?.Offer(HookNames.Embed, embeds);
        var (cos, sin) = _rotary.Compute(embeds.shape[1], embeds.device, embeds.dtype);
        var x = embeds;
        foreach (var layer in layers)
        {
            // A scope per layer keeps a deep model's intermediates from piling up until the example ends.
            using var scope = NewDisposeScope();
            x = layer.Forward(x, cos, sin, cache).MoveToOuterDisposeScope();
        }
        cache?.Offer(HookNames.ResidFinal, x);
        return x;
    }
}

/// <summary>Llama with its LM head: the text model of Llava (<c>language_model</c>) and plain Llama/Vicuna checkpoints.</summary>
public sealed class LlamaForCausalLM : nn.Module
{
    private readonly LlamaModel model;
    private readonly Linear lm_head; // [V, D]

    public LlamaForCausalLM(LlamaConfig c, Device device, ScalarType dtype) : base(nameof(LlamaForCausalLM))
    {
        Config = c;
        model = new LlamaModel(c, device, dtype);
        lm_head = new Linear(c.HiddenSize, c.VocabSize, false, device, dtype);
        RegisterComponents();
    }

    public LlamaConfig Config { get; }
    public LlamaModel Model => model;
    public Linear LmHead => lm_head;

    /// <param name="embeds">[B, T, D]</param>
    /// <param name="logitPositions">positions whose logits to compute (null: only the last).</param>
    /// <returns>logits [B, R, V] in float32.</returns>
    public Tensor Forward(Tensor embeds, ActivationCache? cache, long[]? logitPositions = null)
    {
        var h = model.Forward(embeds, cache);
        var idx = tensor(logitPositions ?? [h.shape[1] - 1], device: h.device);
        return lm_head.call(model.Norm.call(h.index_select(1, idx))).to(ScalarType.Float32);
    }
}
