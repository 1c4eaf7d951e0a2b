using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using LlavaMech.Model.Language;
using LlavaMech.Model.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Model;

/// <summary>
/// LLaVA-1.5: CLIP features of the image, projected, replace the image tokens' embeddings in
/// the prompt; the Llama decoder does the rest.
/// </summary>
public sealed class LlavaForConditionalGeneration : nn.Module
{
    private readonly ClipVisionModel vision_tower;
    private readonly LlavaMultiModalProjector multi_modal_projector;
    private readonly LlamaForCausalLM language_model;

    public LlavaForConditionalGeneration(ModelConfig c, Device device, ScalarType dtype) : base(nameof(LlavaForConditionalGeneration))
    {
        Config = c;
        var v = c.Vision ?? throw new ArgumentException("a Llava model needs a vision_config", nameof(c));
        vision_tower = new ClipVisionModel(v, device, dtype);
        multi_modal_projector = new LlavaMultiModalProjector(v.HiddenSize, c.Text.HiddenSize, c.MultimodalProjectorBias, c.ProjectorHiddenAct, device, dtype);
        language_model = new LlamaForCausalLM(c.Text, device, dtype);
        RegisterComponents();
    }

    public ModelConfig Config { get; }
    public ClipVisionModel VisionTower => vision_tower;
    public LlamaForCausalLM LanguageModel => language_model;

    /// <param name="pixels">[B, C, S, S]</param><returns>[B, P, D] projector outputs, one per image token.</returns>
    public Tensor ImageFeatures(Tensor pixels)
    {
        var hidden = vision_tower.HiddenState(pixels, Config.VisionFeatureLayer); // [B, P+1, Dv]
        if (Config.VisionFeatureSelectStrategy == "default") hidden = hidden.narrow(1, 1, hidden.shape[1] - 1);
        return multi_modal_projector.call(hidden);
    }

    /// <summary>Token embeddings with the image tokens' rows replaced, in order, by the projector outputs.</summary>
    /// <param name="inputIds">[B, T]</param><param name="pixels">[B, C, S, S] or null for a text-only prompt.</param>
    /// <returns>[B, T, D]</returns>
    public Tensor Embed(Tensor inputIds, Tensor? pixels, ActivationCache? cache)
    {
        var isImage = inputIds.eq(Config.ImageTokenId);
        // The image token may lie past the embedding table (transformers 5 checkpoints): look up a placeholder.
        var embeds = language_model.Model.EmbedTokens.call(inputIds.masked_fill(isImage, 0));
        long imageTokens = isImage.sum().item<long>();
        if (pixels is null)
        {
            if (imageTokens != 0) throw new ArgumentException($"the input has {imageTokens} image tokens but no image");
            return embeds;
        }
        var features = ImageFeatures(pixels);                                       // [B, P, D]
        cache?.Offer(HookNames.ImageFeatures, features);
        if (imageTokens != features.shape[0] * features.shape[1])
            throw new ArgumentException($"the input has {imageTokens} image tokens but the image gives {features.shape[0] * features.shape[1]} features");
        return embeds.masked_scatter(isImage.unsqueeze(-1), features.to(embeds.dtype));
    }

    /// <returns>logits [B, R, V] (float32) at <paramref name="logitPositions"/> (null: last position).</returns>
    public Tensor Forward(Tensor inputIds, Tensor? pixels, ActivationCache? cache, long[]? logitPositions = null) =>
        language_model.Forward(Embed(inputIds, pixels, cache), cache, logitPositions);
}
