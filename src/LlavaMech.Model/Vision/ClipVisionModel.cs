using LlavaMech.Model.Layers;
using TorchSharp.Modules;

namespace LlavaMech.Model.Vision;

/// <summary>Patch embedding: a stride-p convolution without bias, <c>weight</c> [D, C, p, p].</summary>
public sealed class PatchEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // [D, C, p, p]
    private readonly long _patch;

    public PatchEmbedding(long dim, long channels, long patch, Device device, ScalarType dtype) : base(nameof(PatchEmbedding))
    {
        weight = new Parameter(empty(dim, channels, patch, patch, dtype: dtype, device: device), requires_grad: false);
        _patch = patch;
        RegisterComponents();
    }

    /// <param name="pixels">[B, C, S, S]</param><returns>[B, P, D], patches row-major.</returns>
    public override Tensor forward(Tensor pixels) =>
        nn.functional.conv2d(pixels, weight, strides: [_patch, _patch]).flatten(2).transpose(1, 2);
}

/// <summary>CLS token + patch embeddings + learned position embeddings.</summary>
public sealed class ClipVisionEmbeddings : nn.Module<Tensor, Tensor>
{
    private readonly Parameter class_embedding;      // [D]
    private readonly PatchEmbedding patch_embedding; // [D, C, p, p]
    private readonly Embedding position_embedding;   // [P+1, D]

    public ClipVisionEmbeddings(ClipVisionConfig c, Device device, ScalarType dtype) : base(nameof(ClipVisionEmbeddings))
    {
        class_embedding = new Parameter(empty(c.HiddenSize, dtype: dtype, device: device), requires_grad: false);
        patch_embedding = new PatchEmbedding(c.HiddenSize, c.NumChannels, c.PatchSize, device, dtype);
        position_embedding = new Embedding(c.NumPatches + 1, c.HiddenSize, device, dtype);
        RegisterComponents();
    }

    /// <param name="pixels">[B, C, S, S]</param><returns>[B, P+1, D]</returns>
    public override Tensor forward(Tensor pixels)
    {
        var patches = patch_embedding.call(pixels.to(class_embedding.dtype));          // [B, P, D]
        var cls = class_embedding.view(1, 1, -1).expand(patches.shape[0], 1, -1);       // [B, 1, D]
        return cat([cls, patches], 1) + position_embedding.Weight.unsqueeze(0);
    }
}

/// <summary>Bidirectional multi-head attention with biases, scale d^-1/2.</summary>
public sealed class ClipAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear q_proj, k_proj, v_proj, out_proj; // each [D, D]
    private readonly int _heads;

    public ClipAttention(ClipVisionConfig c, Device device, ScalarType dtype) : base(nameof(ClipAttention))
    {
        _heads = c.NumAttentionHeads;
        q_proj = new Linear(c.HiddenSize, c.HiddenSize, true, device, dtype);
        k_proj = new Linear(c.HiddenSize, c.HiddenSize, true, device, dtype);
        v_proj = new Linear(c.HiddenSize, c.HiddenSize, true, device, dtype);
        out_proj = new Linear(c.HiddenSize, c.HiddenSize, true, device, dtype);
        RegisterComponents();
    }

    /// <param name="x">[B, N, D]</param>
    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], n = x.shape[1], d = x.shape[2] / _heads;
        Tensor Split(Tensor t) => t.view(b, n, _heads, d).transpose(1, 2);               // [B, h, N, d]
        var ctx = nn.functional.scaled_dot_product_attention(Split(q_proj.call(x)), Split(k_proj.call(x)), Split(v_proj.call(x)));
        return out_proj.call(ctx.transpose(1, 2).reshape(b, n, -1));
    }
}

public sealed class ClipMLP : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1; // [I, D]
    private readonly Linear fc2; // [D, I]
    private readonly Func<Tensor, Tensor> _act;

    public ClipMLP(ClipVisionConfig c, Device device, ScalarType dtype) : base(nameof(ClipMLP))
    {
        fc1 = new Linear(c.HiddenSize, c.IntermediateSize, true, device, dtype);
        fc2 = new Linear(c.IntermediateSize, c.HiddenSize, true, device, dtype);
        _act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => fc2.call(_act(fc1.call(x)));
}

public sealed class ClipEncoderLayer : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm layer_norm1;
    private readonly ClipAttention self_attn;
    private readonly LayerNorm layer_norm2;
    private readonly ClipMLP mlp;

    public ClipEncoderLayer(ClipVisionConfig c, Device device, ScalarType dtype) : base(nameof(ClipEncoderLayer))
    {
        layer_norm1 = new LayerNorm(c.HiddenSize, c.LayerNormEps, device, dtype);
        self_attn = new ClipAttention(c, device, dtype);
        layer_norm2 = new LayerNorm(c.HiddenSize, c.LayerNormEps, device, dtype);
        mlp = new ClipMLP(c, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = x + self_attn.call(layer_norm1.call(x));
        return x + mlp.call(layer_norm2.call(x));
    }
}

public sealed class ClipEncoder : nn.Module
{
    private readonly ModuleList<ClipEncoderLayer> layers;

    public ClipEncoder(ClipVisionConfig c, Device device, ScalarType dtype) : base(nameof(ClipEncoder))
    {
        layers = new ModuleList<ClipEncoderLayer>();
        for (int i = 0; i < c.NumHiddenLayers; i++) layers.Add(new ClipEncoderLayer(c, device, dtype));
        RegisterComponents();
    }

    public IList<ClipEncoderLayer> Layers => layers;
}

/// <summary>
/// The CLIP vision transformer (<c>vision_tower</c>). Llava reads the hidden state of one encoder
/// layer (<c>vision_feature_layer</c>, usually -2), without <c>post_layernorm</c>, so layers after
/// it are never run; <c>post_layernorm</c> is loaded only because checkpoints carry it.
/// </summary>
public sealed class ClipVisionModel : nn.Module
{
    private readonly ClipVisionEmbeddings embeddings;
    private readonly LayerNorm pre_layrnorm;  // sic: the checkpoint key keeps the historical typo
    private readonly ClipEncoder encoder;
    private readonly LayerNorm post_layernorm;
    private readonly string[] _hookResidPost;

    public ClipVisionModel(ClipVisionConfig c, Device device, ScalarType dtype) : base(nameof(ClipVisionModel))
    {
        Config = c;
        embeddings = new ClipVisionEmbeddings(c, device, dtype);
        pre_layrnorm = new LayerNorm(c.HiddenSize, c.LayerNormEps, device, dtype);
        encoder = new ClipEncoder(c, device, dtype);
        post_layernorm = new LayerNorm(c.HiddenSize, c.LayerNormEps, device, dtype);
        _hookResidPost = Enumerable.Range(0, c.NumHiddenLayers).Select(HookNames.VisionResidPost).ToArray();
        RegisterComponents();
    }

    public ClipVisionConfig Config { get; }

    /// <summary>Hidden state number <paramref name="featureLayer"/> (HF indexing: 0 = embeddings after pre_layrnorm, -1 = last layer).</summary>
    /// <param name="pixels">[B, C, S, S]</param>
    /// <param name="hooks">the pass's hook consumers (<c>vision.blocks.{i}.hook_resid_post</c> after each layer that runs), or null.</param>
    /// <returns>[B, P+1, Dv]</returns>
    public Tensor HiddenState(Tensor pixels, int featureLayer, HookPass? hooks = null)
    {
        int index = LayersRun(featureLayer);
        var x = pre_layrnorm.call(embeddings.call(pixels));
        for (int i = 0; i < index; i++)
        {
            using var scope = NewDisposeScope();
            x = encoder.Layers[i].call(x);
            if (hooks is not null) x = hooks.Apply(_hookResidPost[i], x, i);
            x = x.MoveToOuterDisposeScope();
        }
        return x;
    }

    /// <summary>Several hidden states of one pass (HF indexing), in the order of <paramref name="featureLayers"/>, each [B, P+1, Dv].</summary>
    public Tensor[] HiddenStates(Tensor pixels, IReadOnlyList<int> featureLayers, HookPass? hooks = null)
    {
        var index = featureLayers.Select(LayersRun).ToArray();
        var result = new Tensor[index.Length];
        var x = pre_layrnorm.call(embeddings.call(pixels));
        for (int k = 0; k < index.Length; k++) if (index[k] == 0) result[k] = x;
        for (int i = 0; i < index.Max(); i++)
        {
            using var scope = NewDisposeScope();
            x = encoder.Layers[i].call(x);
            if (hooks is not null) x = hooks.Apply(_hookResidPost[i], x, i);
            x = x.MoveToOuterDisposeScope();
            for (int k = 0; k < index.Length; k++) if (index[k] == i + 1) result[k] = x;
        }
        return result;
    }

    /// <summary>How many encoder layers run to produce hidden state <paramref name="featureLayer"/> (HF indexing).</summary>
    public int LayersRun(int featureLayer)
    {
        int states = Config.NumHiddenLayers + 1;
        int index = featureLayer < 0 ? states + featureLayer : featureLayer;
        if (index < 0 || index >= states)
            throw new ArgumentOutOfRangeException(nameof(featureLayer), $"vision_feature_layer {featureLayer} is outside a tower of {Config.NumHiddenLayers} layers");
        return index;
    }
}
