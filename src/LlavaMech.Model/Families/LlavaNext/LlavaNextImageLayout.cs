using LlavaMech.Processing;

namespace LlavaMech.Model;

/// <summary>
/// LLaVA-NeXT's image-token layout from an image's anyres plan: grid 0 = the base tile's p x p features, grid 1 = the kept
/// R' x C' high-resolution grid, each row followed by one image_newline (row stride C' + 1); the tiling travels with it so
/// the model packs by it and figures map it back.
/// </summary>
public static class LlavaNextImageLayout
{
    public static ImageTokenLayout For(AnyresPlan plan, int offset)
    {
        int p = plan.PatchesPerTile;
        var grids = new List<ImageGrid> { new(0, p, p) };
        // An extreme aspect ratio can keep no column: only the newlines remain after the base (transformers does the same).
        if (plan.KeptRows > 0 && plan.KeptCols > 0) grids.Add(new ImageGrid(plan.BaseTokens, plan.KeptRows, plan.KeptCols, plan.KeptCols + 1));
        return new ImageTokenLayout(offset, plan.ImageTokens, hasCls: false, grids)
        {
            Tiling = new ImageTiling(plan.TileRows, plan.TileCols, p, plan.KeepRowStart, plan.KeptRows, plan.KeepColStart, plan.KeptCols,
                plan.ImageHeight, plan.ImageWidth),
        };
    }
}
