using LlavaMech.Processing;

namespace LlavaMech.Model;

/// <summary>
/// LLaVA-NeXT (llava-v1.6, <c>model_type</c> llava_next): CLIP tower over a downscaled base tile plus a grid of
/// high-resolution tiles, the projector per tile, packing with unpadding and a learned image_newline, and a Llama or Mistral
/// decoder (docs/METHOD_NEXT.md). The number of image tokens follows each image's size.
/// </summary>
public sealed class LlavaNextFamily() : DecoderFamily("llava_next", ["llava_next"], ["LlavaNextForConditionalGeneration"], ModelKind.LlavaNext,
    takesImages: true, lmHeadWeight: "language_model.lm_head.weight")
{
    public static LlavaNextFamily Instance { get; } = new();

    internal override DecoderNetwork Build(ModelConfig config, Device device, ScalarType dtype) => DecoderNetwork.Of(new LlavaNextForConditionalGeneration(config, device, dtype));

    internal override IImageProcessor LoadImageProcessor(string dir, ModelConfig config) =>
        AnyresImageProcessor.FromDirectory(dir, config.ImageGridPinpoints!, config.Vision!.PatchSize);

    public override bool TokensFollowImage => true;

    public override int ImageTokens(ModelConfig config, PreprocessedImage image) =>
        (image.Anyres ?? throw new ArgumentException("a LLaVA-NeXT image needs its anyres plan", nameof(image))).ImageTokens;

    public override ImageTokenLayout ImageLayout(ModelConfig config, int offset, PreprocessedImage? image) =>
        LlavaNextImageLayout.For(image?.Anyres ?? throw new ArgumentException("a LLaVA-NeXT layout needs the image's anyres plan", nameof(image)), offset);

    public override ImageTokenLayout ImageLayout(ModelConfig config, int offset) =>
        throw new InvalidOperationException("a LLaVA-NeXT image's layout follows its size: give the preprocessed image");
}
