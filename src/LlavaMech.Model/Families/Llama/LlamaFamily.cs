using LlavaMech.Model.Language;

namespace LlavaMech.Model;

/// <summary>Plain Llama / Vicuna (<c>model_type</c> llama): the text-only model, no image tokens.</summary>
public sealed class LlamaFamily() : DecoderFamily("llama", ["llama"], ["LlamaForCausalLM"], ModelKind.Llama,
    takesImages: false, lmHeadWeight: "lm_head.weight")
{
    public static LlamaFamily Instance { get; } = new();

    internal override DecoderNetwork Build(ModelConfig config, Device device, ScalarType dtype)
    {
        var lm = new LlamaForCausalLM(config.Text, device, dtype);
        return new DecoderNetwork(lm, lm, null);
    }
}
