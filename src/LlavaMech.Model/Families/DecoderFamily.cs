using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using LlavaMech.Model.Language;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Model;

/// <summary>
/// A family whose language model is the Llama decoder (<see cref="LlamaForCausalLM"/>), with or without an image
/// front end: <see cref="LoadedModel"/> is its model, and the family supplies the network, the lm-head's weight name
/// and the image-token layout. LLaVA-NeXT would be one more subclass; a family with another decoder (Qwen2-VL)
/// implements <see cref="IModelFamily"/> and <see cref="IHookedModel"/> itself.
/// </summary>
public abstract class DecoderFamily : IModelFamily
{
    public abstract string Name { get; }
    public abstract IReadOnlyList<string> ModelTypes { get; }
    public abstract IReadOnlyList<string> Architectures { get; }
    /// <summary>The parsed configuration's kind this family builds.</summary>
    public abstract ModelKind DecoderKind { get; }
    public ModelKind? Kind => DecoderKind;

    /// <summary>Whether prompts may carry an image (the family has a vision tower and an image processor).</summary>
    public abstract bool TakesImages { get; }

    /// <summary>The canonical name of the lm-head weight (<see cref="WeightNames"/>).</summary>
    public abstract string LmHeadWeight { get; }

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
