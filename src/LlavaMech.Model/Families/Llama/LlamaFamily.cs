using LlavaMech.Checkpoints;
using LlavaMech.Model.Language;
using static TorchSharp.torch;

namespace LlavaMech.Model;

/// <summary>Plain Llama / Vicuna (<c>model_type</c> llama): the text-only model, no image tokens.</summary>
public sealed class LlamaFamily : DecoderFamily
{
    public static LlamaFamily Instance { get; } = new();
    private LlamaFamily() { }

    public override string Name => "llama";
    public override IReadOnlyList<string> ModelTypes { get; } = ["llama"];
    public override IReadOnlyList<string> Architectures { get; } = ["LlamaForCausalLM"];
    public override ModelKind DecoderKind => ModelKind.Llama;
    public override bool TakesImages => false;
    public override string LmHeadWeight => "lm_head.weight";

    internal override DecoderNetwork Build(ModelConfig config, Device device, ScalarType dtype)
    {
        var lm = new LlamaForCausalLM(config.Text, device, dtype);
        return new DecoderNetwork(lm, lm, null);
    }
}
