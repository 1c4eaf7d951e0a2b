using TorchSharp.Modules;

namespace LlavaMech.Model.Language;

/// <summary>x / sqrt(mean(x^2) + eps) * weight, computed in float32 as Hugging Face does.</summary>
public sealed class LlamaRMSNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // [D]
    private readonly double _eps;

    public LlamaRMSNorm(long dim, double eps, Device device, ScalarType dtype) : base(nameof(LlamaRMSNorm))
    {
        weight = new Parameter(empty(dim, dtype: dtype, device: device), requires_grad: false);
        _eps = eps;
        RegisterComponents();
    }

    public Tensor Weight => weight;
    public double Eps => _eps;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * torch.rsqrt(x32.pow(2).mean([-1], keepdim: true) + _eps);
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
