using LlavaMech.Hooks;
using LlavaMech.Processing;

namespace LlavaMech.Explanation;

/// <summary>
/// Which image tokens cover which part of the picture, for every layout: LLaVA-1.5's one patch grid over the model's crop,
/// and LLaVA-NeXT's base tile (the whole image squashed to one tile, so its cells cover the whole image) and kept
/// high-resolution grid (padding removed, so its R' x C' cells cover the unpadded image, as explain_highres.png draws
/// them). Newline tokens and the class token have no area. The ground-truth metrics of <c>findings</c>,
/// <c>compare-methods</c> and <c>score-methods</c> are computed over these tokens.
/// </summary>
public static class ImageRegions
{
    /// <summary>Image-token indices (0..Count-1) that cover part of the picture: the patches of every grid, ascending
    /// (LLaVA-1.5: the patch grid, row-major; LLaVA-NeXT: the base tile, then the high-resolution grid).</summary>
    public static int[] AreaTokens(ImageTokenLayout layout) =>
        Enumerable.Range(0, layout.Grids.Count).SelectMany(layout.GridTokenIndices).ToArray();

    /// <summary>Whether image token <paramref name="tokenIndex"/> is a row-ending newline (LLaVA-NeXT): no area.</summary>
    public static bool IsNewline(ImageTokenLayout layout, int tokenIndex) => layout.PlaceOf(tokenIndex).Part == ImagePart.Newline;

    /// <summary>
    /// The image tokens whose cells overlap a box given in original-image pixels (x0, y0, x1, y1), in
    /// <see cref="AreaTokens"/> order: on the base grid by <see cref="ClipImageProcessor.BoxToPatches"/> through the input's
    /// geometry, on LLaVA-NeXT's high-resolution grid by the same rule with its cells stretched over the original image.
    /// </summary>
    public static int[] TokensInBox(ImageTokenLayout layout, ImageGeometry geometry, int patchSize, double[] box)
    {
        ArgumentNullException.ThrowIfNull(box);
        if (box.Length != 4) throw new ArgumentException($"a box has 4 coordinates, got {box.Length}", nameof(box));
        var tokens = ClipImageProcessor.BoxToPatches(geometry, box[0], box[1], box[2], box[3], patchSize)
            .Select(rc => layout.Grids[0].TokenIndex(rc.Row, rc.Col)).ToList();
        if (layout.Tiling is { } t && layout.Grids.Count > 1)
        {
            // One cell of the kept grid = one patchSize square of a C' x R' "crop" that is the whole original image.
            var grid = layout.Grids[1];
            var stretched = new ImageGeometry(t.ImageWidth, t.ImageHeight, grid.Cols * patchSize, grid.Rows * patchSize, 0, 0, grid.Cols * patchSize, grid.Rows * patchSize);
            tokens.AddRange(ClipImageProcessor.BoxToPatches(stretched, box[0], box[1], box[2], box[3], patchSize).Select(rc => grid.TokenIndex(rc.Row, rc.Col)));
        }
        else if (layout.Grids.Count > 1)
            throw new ArgumentException($"the image has {layout.Grids.Count} grids but no tiling: where its cells lie on the picture is unknown", nameof(layout));
        return tokens.ToArray();
    }

    /// <summary>The image tokens of each part ("base", "grid", "newline", "cls"), in token order, parts in order of first token.</summary>
    public static IReadOnlyList<(string Part, int[] Tokens)> Parts(ImageTokenLayout layout) =>
        Enumerable.Range(0, layout.Count).GroupBy(i => layout.PlaceOf(i).PartName).Select(g => (g.Key, g.ToArray())).ToList();
}
