using LlavaMech.Model.Language;
using LlavaMech.Model.Vision;

namespace LlavaMech.Model;

/// <summary>
/// LLaVA-1.5: CLIP features of the image, projected, replace the image tokens' embeddings in
/// the prompt; the Llama decoder does the rest.
/// </summary>
public sealed class LlavaForConditionalGeneration : nn.Module, IVisionLanguageNetwork
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

    /// <summary>Vision encoder layers a pass runs (up to <c>vision_feature_layer</c>).</summary>
    public int VisionLayersRun => vision_tower.LayersRun(Config.VisionFeatureLayer);

    /// <param name="pixels">[B, C, S, S]</param><param name="hooks">the pass's hook consumers (vision layers), or null.</param>
    /// <returns>[B, P, D] projector outputs, one per image token (before <c>vision.hook_image_features</c>).</returns>
    public Tensor ImageFeatures(Tensor pixels, HookPass? hooks = null)
    {
        var hidden = vision_tower.HiddenState(pixels, Config.VisionFeatureLayer, hooks); // [B, P+1, Dv]
        if (Config.VisionFeatureSelectStrategy == "default") hidden = hidden.narrow(1, 1, hidden.shape[1] - 1);
        return multi_modal_projector.call(hidden);
    }

    /// <summary>Token embeddings with the image tokens' rows replaced, in order, by the projector outputs.</summary>
    /// <param name="inputIds">[B, T]</param><param name="pixels">[B, C, S, S] or null for a text-only prompt.</param>
    /// <param name="hooks">hook consumers of the vision points and the projector output, or null.</param>
    /// <returns>[B, T, D]</returns>
    public Tensor Embed(Tensor inputIds, Tensor? pixels, IHookSet? hooks, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null)
    {
        var pass = HookPass.For(hooks, (int)inputIds.shape[0], (int)inputIds.shape[1], inputIds.device, imageLayouts);
        try { return Embed(inputIds, pixels, pass); }
        finally { pass?.Info.Release(); }
    }

    private Tensor Embed(Tensor inputIds, Tensor? pixels, HookPass? hooks) =>
        // The image token may lie past the embedding table (transformers 5 checkpoints): ImageEmbedding looks up a placeholder.
        ImageEmbedding.Embed(language_model.Model.EmbedTokens.call, inputIds, Config.ImageTokenId, pixels, hooks, p => ImageFeatures(p, hooks), "features");

    /// <param name="inputIds">[B, T]</param><param name="pixels">[B, C, S, S] or null.</param>
    /// <param name="hooks">hook consumers (an <see cref="ActivationCache"/>, <see cref="HookEdits"/>, a <see cref="HookChain"/>), or null.</param>
    /// <param name="imageLayouts">per batch row, where its image tokens are (for hooks that ask); null when unknown.</param>
    /// <returns>logits [B, R, V] (float32) at <paramref name="logitPositions"/> (null: last position).</returns>
    public Tensor Forward(Tensor inputIds, Tensor? pixels, IHookSet? hooks, long[]? logitPositions = null, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null)
    {
        var pass = HookPass.For(hooks, (int)inputIds.shape[0], (int)inputIds.shape[1], inputIds.device, imageLayouts);
        try { return language_model.Run(Embed(inputIds, pixels, pass), pass, logitPositions); }
        finally { pass?.Info.Release(); }
    }
}
