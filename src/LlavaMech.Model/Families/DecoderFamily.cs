using LlavaMech.Model.Language;

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
}

/// <summary>What a <see cref="DecoderFamily"/> builds: the whole network (weights load into it), its Llama decoder and, with
/// vision, the Llava wrapper that embeds images.</summary>
internal sealed record DecoderNetwork(nn.Module Network, LlamaForCausalLM LanguageModel, LlavaForConditionalGeneration? Llava);
