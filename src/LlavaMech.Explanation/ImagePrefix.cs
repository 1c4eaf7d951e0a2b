using LlavaMech.Analysis;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Model.Language;
using static TorchSharp.torch;

namespace LlavaMech.Explanation;

/// <summary>
/// What every question about one image shares (docs/METHOD.md, "Prefix reuse"): the decoder's keys and values over the
/// common token prefix (the image's tokens among them), the projector outputs of the image and, once the first example
/// has read it, the image's visual-token lens logits. Built by <see cref="ExampleAnalyzer.Prefix"/>; owns its tensors.
/// </summary>
public sealed class ImagePrefix : IDisposable
{
    internal ImagePrefix(DecoderPrefix decoder, Tensor? imageFeatures)
    {
        Decoder = decoder; ImageFeatures = imageFeatures;
    }

    public DecoderPrefix Decoder { get; }
    /// <summary>[1, N, D] projector outputs (null: the prefix holds no image).</summary>
    public Tensor? ImageFeatures { get; }
    /// <summary>The image's lens logits, filled by the first example that computes the visual-token lens.</summary>
    public SharedLensLogits Lens { get; } = new();
    public int Length => Decoder.Length;

    /// <summary>Bytes held now: keys, values, features and (once computed) the lens logits.</summary>
    public long Bytes => Decoder.Bytes + (ImageFeatures is { } f ? f.NumberOfElements * f.ElementSize : 0)
        + (Lens.Logits is { } l ? l.NumberOfElements * l.ElementSize : 0);

    /// <summary>Bytes a prefix of <paramref name="length"/> tokens with <paramref name="imageTokens"/> image tokens takes at most in
    /// <paramref name="model"/>, known before it is computed (the lens logits in float32 counted in).</summary>
    public static long BytesFor(IHookedModel model, int length, int imageTokens)
    {
        int element = model.DType == ScalarType.Float32 ? 4 : 2;
        var c = model.Config.Text;
        return DecoderPrefix.BytesFor(length, model.Layers, model.KeyValueHeads, model.HeadDim, element)
            + (long)imageTokens * c.HiddenSize * element + SharedLensLogits.BytesFor(imageTokens, c.VocabSize);
    }

    public void Dispose()
    {
        Decoder.Dispose();
        ImageFeatures?.Dispose();
        Lens.Dispose();
    }
}
