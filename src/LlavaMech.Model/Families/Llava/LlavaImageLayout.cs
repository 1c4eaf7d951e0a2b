namespace LlavaMech.Model;

/// <summary>
/// LLaVA-1.5's image-token layout from its configuration: one grid of image_size / patch_size patches on each side, after
/// the class-token feature with vision_feature_select_strategy <c>full</c> (strategy <c>default</c> drops it).
/// </summary>
public static class LlavaImageLayout
{
    /// <summary>The layout of an image whose first token sits at sequence position <paramref name="offset"/>.</summary>
    /// <exception cref="CheckpointException">The config has no vision tower, or its image_seq_length disagrees with the grid.</exception>
    public static ImageTokenLayout For(ModelConfig config, int offset)
    {
        var v = config.Vision ?? throw new CheckpointException($"config '{config.SourcePath}' has no vision_config: a {config.Kind} model has no image tokens");
        int side = v.PatchesPerSide;
        var layout = ImageTokenLayout.SingleGrid(offset, side, side, hasCls: config.VisionFeatureSelectStrategy == "full");
        if (layout.Count != config.ImageSeqLength)
            throw new CheckpointException(
                $"config '{config.SourcePath}': {config.Describe("image_seq_length", config.ImageSeqLength)}, but image_size {v.ImageSize} / patch_size {v.PatchSize} " +
                $"is a {side} x {side} grid{(layout.HasCls ? " plus the class token" : "")}: {layout.Count} image tokens");
        return layout;
    }
}
