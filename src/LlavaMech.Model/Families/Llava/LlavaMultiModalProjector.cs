using LlavaMech.Model.Layers;

namespace LlavaMech.Model;

/// <summary>linear_2(act(linear_1(x))): vision features into the language model's embedding space.</summary>
public sealed class LlavaMultiModalProjector : nn.Module<Tensor, Tensor>
{
    private readonly Linear linear_1; // [D, Dv]
    private readonly Linear linear_2; // [D, D]
    private readonly Func<Tensor, Tensor> _act;

    public LlavaMultiModalProjector(long visionHidden, long textHidden, bool bias, string act, Device device, ScalarType dtype) : base(nameof(LlavaMultiModalProjector))
    {
        linear_1 = new Linear(visionHidden, textHidden, bias, device, dtype);
        linear_2 = new Linear(textHidden, textHidden, bias, device, dtype);
        _act = Activations.Get(act);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => linear_2.call(_act(linear_1.call(x)));
}
