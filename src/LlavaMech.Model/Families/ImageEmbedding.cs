namespace LlavaMech.Model;

/// <summary>
/// The input embeddings of a LLaVA-style model, the same for every family that puts image features in place of image
/// tokens: the text's token embeddings (an image token is looked up as id 0, since it may lie past the embedding table,
/// as in transformers 5 checkpoints), then the family's image features, offered to the <c>image_features</c> hook point,
/// counted against the image tokens and scattered into their rows in order.
/// </summary>
internal static class ImageEmbedding
{
    /// <param name="embedTokens">the decoder's token embedding.</param>
    /// <param name="imageFeatures">the family's image features of <c>pixels</c>, [B, N, D].</param>
    /// <param name="what">what the features are called in the count mismatch message.</param>
    /// <returns>[B, T, D]</returns>
    public static Tensor Embed(Func<Tensor, Tensor> embedTokens, Tensor inputIds, long imageTokenId, Tensor? pixels, HookPass? hooks,
        Func<Tensor, Tensor> imageFeatures, string what)
    {
        var isImage = inputIds.eq(imageTokenId);
        var embeds = embedTokens(inputIds.masked_fill(isImage, 0));
        long imageTokens = isImage.sum().item<long>();
        if (pixels is null)
        {
            if (imageTokens != 0) throw new ArgumentException($"the input has {imageTokens} image tokens but no image");
            return embeds;
        }
        var features = imageFeatures(pixels);
        if (hooks is not null) features = hooks.Apply(HookNames.ImageFeatures, features);
        if (imageTokens != features.shape[0] * features.shape[1])
            throw new ArgumentException($"the input has {imageTokens} image tokens but the image gives {features.shape[0] * features.shape[1]} {what}");
        return embeds.masked_scatter(isImage.unsqueeze(-1), features.to(embeds.dtype));
    }
}
