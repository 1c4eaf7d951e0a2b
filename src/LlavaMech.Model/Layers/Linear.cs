using TorchSharp.Modules;

namespace LlavaMech.Model.Layers;

/// <summary>
/// y = x W^T + b with parameters allocated uninitialised on the target device and dtype: weights
/// come from a checkpoint, so the random init of <c>nn.Linear</c> would be wasted work (minutes at 7B on CPU).
/// </summary>
public sealed class Linear : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // [out, in]
    private readonly Parameter? bias;  // [out]

    public Linear(long inFeatures, long outFeatures, bool hasBias, Device device, ScalarType dtype) : base(nameof(Linear))
    {
        weight = new Parameter(empty(outFeatures, inFeatures, dtype: dtype, device: device), requires_grad: false);
        if (hasBias) bias = new Parameter(empty(outFeatures, dtype: dtype, device: device), requires_grad: false);
        RegisterComponents();
    }

    public Tensor Weight => weight;
    public Tensor? Bias => bias;

    public override Tensor forward(Tensor x) => nn.functional.linear(x, weight, bias);
}

/// <summary>LayerNorm over the last axis with weight and bias (CLIP).</summary>
public sealed class LayerNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // [D]
    private readonly Parameter bias;   // [D]
    private readonly double _eps;

    public LayerNorm(long dim, double eps, Device device, ScalarType dtype) : base(nameof(LayerNorm))
    {
        weight = new Parameter(empty(dim, dtype: dtype, device: device), requires_grad: false);
        bias = new Parameter(empty(dim, dtype: dtype, device: device), requires_grad: false);
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => nn.functional.layer_norm(x, [weight.shape[0]], weight, bias, _eps);
}

/// <summary>A lookup table, <c>weight</c> [num, dim], named as in the checkpoints.</summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // [num, dim]

    public Embedding(long num, long dim, Device device, ScalarType dtype) : base(nameof(Embedding))
    {
        weight = new Parameter(empty(num, dim, dtype: dtype, device: device), requires_grad: false);
        RegisterComponents();
    }

    public Tensor Weight => weight;

    public override Tensor forward(Tensor ids) => weight.index_select(0, ids.reshape(-1)).reshape([.. ids.shape, weight.shape[1]]);
}

/// <summary>The activations named in Hugging Face configs.</summary>
public static class Activations
{
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "silu" or "swish" => x => nn.functional.silu(x),
        "gelu" => x => nn.functional.gelu(x),                       // exact, erf
        "gelu_pytorch_tanh" or "gelu_new" => x => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "quick_gelu" => x => x * torch.sigmoid(x * 1.702),
        "relu" => x => nn.functional.relu(x),
        _ => throw new NotSupportedException($"activation '{name}' is not supported (silu, gelu, gelu_pytorch_tanh, quick_gelu, relu)"),
    };
}
