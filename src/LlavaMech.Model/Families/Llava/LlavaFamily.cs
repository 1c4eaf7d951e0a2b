using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using static TorchSharp.torch;

namespace LlavaMech.Model;

/// <summary>LLaVA-1.5 (<c>model_type</c> llava): CLIP tower, projector, Llama decoder; one square patch grid per image.</summary>
public sealed class LlavaFamily : DecoderFamily
{
    public static LlavaFamily Instance { get; } = new();
    private LlavaFamily() { }

    public override string Name => "llava";
    public override IReadOnlyList<string> ModelTypes { get; } = ["llava"];
    public override IReadOnlyList<string> Architectures { get; } = ["LlavaForConditionalGeneration"];
    public override ModelKind DecoderKind => ModelKind.Llava;
    public override bool TakesImages => true;
    public override string LmHeadWeight => "language_model.lm_head.weight";

    internal override DecoderNetwork Build(ModelConfig config, Device device, ScalarType dtype)
    {
        var llava = new LlavaForConditionalGeneration(config, device, dtype);
        return new DecoderNetwork(llava, llava.LanguageModel, llava);
    }

    public override ImageTokenLayout ImageLayout(ModelConfig config, int offset) => LlavaImageLayout.For(config, offset);
}
