using LlavaMech.Model.Language;
using LlavaMech.Processing;

namespace LlavaMech.Model;

/// <summary>
/// A family whose language model is the Llama decoder (<see cref="LlamaForCausalLM"/>), with or without an image
/// front end: <see cref="LoadedModel"/> is its model, and the family supplies the network, the lm-head's weight name
/// and the image-token layout. LLaVA-NeXT would be one more subclass; a family with another decoder (Qwen2-VL)
/// implements <see cref="IModelFamily"/> and <see cref="IHookedModel"/> itself.
/// </summary>
/// <param name="name">Short name, e.g. "llava".</param>
/// <param name="modelTypes">config.json <c>model_type</c> values the family loads.</param>
/// <param name="architectures">config.json <c>architectures</c> entries it loads (when model_type is absent).</param>
/// <param name="decoderKind">The parsed configuration's kind this family builds.</param>
/// <param name="takesImages">Whether prompts may carry an image (the family has a vision tower and an image processor).</param>
/// <param name="lmHeadWeight">The canonical name of the lm-head weight (<see cref="WeightNames"/>).</param>
public abstract class DecoderFamily(string name, IReadOnlyList<string> modelTypes, IReadOnlyList<string> architectures,
    ModelKind decoderKind, bool takesImages, string lmHeadWeight) : IModelFamily
{
    public string Name => name;
    public IReadOnlyList<string> ModelTypes => modelTypes;
    public IReadOnlyList<string> Architectures => architectures;
    public ModelKind DecoderKind => decoderKind;
    public ModelKind? Kind => decoderKind;
    public bool TakesImages => takesImages;
    public string LmHeadWeight => lmHeadWeight;

    public IHookedModel Load(string dir, ModelLoadOptions? options = null) => LoadedModel.Load(dir, options, this);

    /// <summary>The modules of a configuration on a device, weights uninitialised.</summary>
    internal abstract DecoderNetwork Build(ModelConfig config, Device device, ScalarType dtype);

    /// <summary>The image-token layout of an image whose first token is at <paramref name="offset"/>.</summary>
    public virtual ImageTokenLayout ImageLayout(ModelConfig config, int offset) =>
        throw new InvalidOperationException($"the {Name} family takes no images");

    /// <summary>The layout of a given preprocessed image (families whose layout follows the image's size override it).</summary>
    public virtual ImageTokenLayout ImageLayout(ModelConfig config, int offset, PreprocessedImage? image) => ImageLayout(config, offset);

    /// <summary>Whether the number of image tokens follows each image's size (then the image is read before the prompt is encoded).</summary>
    public virtual bool TokensFollowImage => false;

    /// <summary>Image tokens of one preprocessed image: image_seq_length unless the family computes it from the image.</summary>
    public virtual int ImageTokens(ModelConfig config, PreprocessedImage image) => config.ImageSeqLength;

    /// <summary>The image processor of a checkpoint folder (CLIP's unless the family has its own).</summary>
    internal virtual IImageProcessor LoadImageProcessor(string dir, ModelConfig config) => ClipImageProcessor.FromDirectory(dir);
}

/// <summary>What a <see cref="DecoderFamily"/> builds: the whole network (weights load into it), its Llama decoder and, with
/// vision, the network that embeds images.</summary>
internal sealed record DecoderNetwork(nn.Module Network, LlamaForCausalLM LanguageModel, IVisionLanguageNetwork? Vision)
{
    /// <summary>A vision-language network: the whole network, with its decoder, that also embeds the images.</summary>
    public static DecoderNetwork Of<T>(T network) where T : nn.Module, IVisionLanguageNetwork => new(network, network.LanguageModel, network);
}

/// <summary>A vision-language network around the Llama decoder (LLaVA-1.5, LLaVA-NeXT): embeds images into the prompt and runs the pass.</summary>
public interface IVisionLanguageNetwork
{
    /// <summary>Vision encoder layers a pass runs.</summary>
    int VisionLayersRun { get; }

    /// <summary>The Llama (or Mistral) decoder the image features feed.</summary>
    LlamaForCausalLM LanguageModel { get; }

    /// <summary>Token embeddings [B, T, D] with the image features spliced in.</summary>
    Tensor Embed(Tensor inputIds, Tensor? pixels, IHookSet? hooks, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null);

    /// <summary>logits [B, R, V] (float32) at <paramref name="logitPositions"/> (null: last position).</summary>
    Tensor Forward(Tensor inputIds, Tensor? pixels, IHookSet? hooks, long[]? logitPositions = null, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null);
}
