using LlavaMech.Model.Layers;

namespace LlavaMech.Model.Language;

/// <summary>SwiGLU MLP: down(act(gate(x)) * up(x)).</summary>
public sealed class LlamaMLP : nn.Module
{
    private readonly Linear gate_proj; // [I, D]
    private readonly Linear up_proj;   // [I, D]
    private readonly Linear down_proj; // [D, I]
    private readonly Func<Tensor, Tensor> _act;
    private readonly int _layer;
    private readonly string _hookPost;

    public LlamaMLP(int layer, long hidden, long intermediate, bool bias, string act, Device device, ScalarType dtype) : base(nameof(LlamaMLP))
    {
        _layer = layer;
        _hookPost = HookNames.MlpPost(layer);
        gate_proj = new Linear(hidden, intermediate, bias, device, dtype);
        up_proj = new Linear(hidden, intermediate, bias, device, dtype);
        down_proj = new Linear(intermediate, hidden, bias, device, dtype);
        _act = Activations.Get(act);
        RegisterComponents();
    }

    public Linear DownProj => down_proj;

    /// <param name="x">[B, T, D] post-attention-normed residual stream.</param>
    /// <param name="hooks">the pass's hook consumers, or null.</param>
    public Tensor Forward(Tensor x, HookPass? hooks)
    {
        var post = _act(gate_proj.call(x)) * up_proj.call(x); // [B, T, I]
        if (hooks is not null) post = hooks.Apply(_hookPost, post, _layer);
        return down_proj.call(post);
    }
}
