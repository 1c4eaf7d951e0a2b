namespace LlavaMech.Model;

/// <summary>LLaVA-1.5 (<c>model_type</c> llava): CLIP tower, projector, Llama decoder; one square patch grid per image.</summary>
public sealed class LlavaFamily() : DecoderFamily("llava", ["llava"], ["LlavaForConditionalGeneration"], ModelKind.Llava,
    takesImages: true, lmHeadWeight: "language_model.lm_head.weight")
{
    public static LlavaFamily Instance { get; } = new();

    internal override DecoderNetwork Build(ModelConfig config, Device device, ScalarType dtype) => DecoderNetwork.Of(new LlavaForConditionalGeneration(config, device, dtype));

    public override ImageTokenLayout ImageLayout(ModelConfig config, int offset) => LlavaImageLayout.For(config, offset);
}
