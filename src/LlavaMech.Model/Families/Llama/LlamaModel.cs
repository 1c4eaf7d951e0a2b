using LlavaMech.Model.Layers;
using TorchSharp.Modules;

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
    /// <param name="hooks">the pass's hook consumers, or null.</param>
    /// <param name="prefix">a reused prefix: <paramref name="embeds"/> are then the positions after it (rotary positions continue from P).</param>
    public Tensor Forward(Tensor embeds, HookPass? hooks, DecoderPrefix? prefix = null)
    {
        if (prefix is not null && prefix.Keys.Count != layers.Count)
            throw new ArgumentException($"a prefix of {prefix.Keys.Count} layers for a decoder of {layers.Count}", nameof(prefix));
        if (hooks is not null) embeds = hooks.Apply(HookNames.Embed, embeds);
        var (cos, sin) = _rotary.Compute((prefix?.Length ?? 0) + embeds.shape[1], embeds.device, embeds.dtype);
        var x = embeds;
        foreach (var layer in layers)
        {
            // A scope per layer keeps a deep model's intermediates from piling up until the example ends.
            using var scope = NewDisposeScope();
            x = layer.Forward(x, cos, sin, hooks, prefix).MoveToOuterDisposeScope();
        }
        return hooks is null ? x : hooks.Apply(HookNames.ResidFinal, x);
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
    /// <param name="hooks">hook consumers (an <see cref="ActivationCache"/>, <see cref="HookEdits"/>, a <see cref="HookChain"/>), or null.</param>
    /// <param name="logitPositions">positions whose logits to compute (null: only the last).</param>
    /// <param name="imageLayouts">per batch row, where its image tokens are (for hooks that ask); null when unknown.</param>
    /// <param name="prefix">a reused prefix of P tokens (<see cref="DecoderPrefix"/>): <paramref name="embeds"/> are the positions
    /// P..T-1 and <paramref name="logitPositions"/> count from P; the hooks see positions in the whole sequence
    /// (<see cref="PassInfo.QueryOffset"/> = P), and <paramref name="imageLayouts"/> are the whole sequence's.</param>
    /// <returns>logits [B, R, V] in float32.</returns>
    public Tensor Forward(Tensor embeds, IHookSet? hooks, long[]? logitPositions = null, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null,
        DecoderPrefix? prefix = null)
    {
        int p = prefix?.Length ?? 0;
        var pass = HookPass.For(hooks, (int)embeds.shape[0], p + (int)embeds.shape[1], embeds.device, imageLayouts, p);
        try { return Run(embeds, pass, logitPositions, prefix); }
        finally { pass?.Info.Release(); }
    }

    /// <summary>The decoder and head within a pass already set up (Llava's, after its image hooks).</summary>
    internal Tensor Run(Tensor embeds, HookPass? hooks, long[]? logitPositions, DecoderPrefix? prefix = null)
    {
        var h = model.Forward(embeds, hooks, prefix);
        var idx = tensor(logitPositions ?? [h.shape[1] - 1], device: h.device);
        return lm_head.call(model.Norm.call(h.index_select(1, idx))).to(ScalarType.Float32);
    }
}
