using LlavaMech.Processing;

namespace LlavaMech.Model;

/// <summary>
/// What the analyses need of a model, whatever its family: inputs prepared from a prompt (and image) with their
/// image-token layout, hooked forward passes whose hook points can be read and edited, the shapes, the readout
/// weights and the tokenizer. <see cref="LoadedModel"/> implements it for the families with a Llama decoder;
/// <see cref="ModelFamilies"/> finds the family of a checkpoint.
/// </summary>
public interface IHookedModel : IDisposable
{
    /// <summary>The checkpoint folder (or the config's path for a model with random weights).</summary>
    string Directory { get; }
    ModelConfig Config { get; }
    /// <summary>The family that built this model (<see cref="ModelFamilies"/>).</summary>
    IModelFamily Family { get; }
    Device Device { get; }
    ScalarType DType { get; }
    ITextTokenizer Tokenizer { get; }
    bool HasVision { get; }

    /// <summary>L: decoder layers.</summary>
    int Layers { get; }
    /// <summary>H: query heads per decoder layer.</summary>
    int Heads { get; }
    /// <summary>KV: key/value heads per decoder layer (H with multi-head attention).</summary>
    int KeyValueHeads { get; }
    /// <summary>d: head size.</summary>
    int HeadDim { get; }
    /// <summary>Vision encoder layers a pass runs, so the <c>vision.blocks.{l}</c> hook points it reaches (0 without vision).</summary>
    int VisionLayersRun { get; }

    /// <summary>Tokenizes the prompt (expanding &lt;image&gt;), preprocesses the image and records where its tokens are.</summary>
    ModelInput Prepare(string prompt, string? imagePath, int maxPromptTokens = 0);

    /// <summary>Inputs of equal length and image geometry as one batch: ids [B, T] and pixels [B, 3, H, W] (or null).</summary>
    (Tensor Ids, Tensor? Pixels) ToTensors(IReadOnlyList<ModelInput> inputs);

    /// <summary>One forward pass with hook consumers (capture, edits or both; null: a plain pass).</summary>
    /// <param name="imageLayouts">per batch row, where its image tokens are, for hooks that ask (null: unknown).</param>
    /// <returns>logits [B, R, V], float32, at <paramref name="logitPositions"/> (null: last position).</returns>
    Tensor Forward(Tensor inputIds, Tensor? pixels, IHookSet? hooks = null, long[]? logitPositions = null, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null);

    /// <summary>Prepared inputs as one batch (their layouts reach the hooks); logits [B, R, V], float32.</summary>
    Tensor Forward(IReadOnlyList<ModelInput> inputs, IHookSet? hooks = null, long[]? logitPositions = null);

    /// <summary>A token for display.</summary>
    string TokenText(int id);

    /// <summary>[D] final norm weight g.</summary>
    Tensor FinalNormWeight { get; }
    /// <summary>The final norm's epsilon.</summary>
    double FinalNormEps { get; }
    /// <summary>[V, D] unembedding W_U.</summary>
    Tensor LmHeadWeight { get; }
    /// <summary>[D, H*d] per layer: o_proj weights.</summary>
    IReadOnlyList<Tensor> OProj { get; }
    /// <summary>[D, I] per layer: MLP down-projection weights.</summary>
    IReadOnlyList<Tensor> DownProj { get; }
}
