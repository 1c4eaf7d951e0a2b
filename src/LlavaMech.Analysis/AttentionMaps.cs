using LlavaMech.Hooks;

namespace LlavaMech.Analysis;

/// <summary>Image-position views of the last query's attention and of head position scores.</summary>
public static class AttentionMaps
{
    /// <summary>The paper's raw-attention baseline: mean over all layers and heads of A_{l,h}[t, p] for p in <paramref name="imagePositions"/>: [P].</summary>
    public static Tensor Baseline(Tensor patternLastRow, Tensor imagePositions, ScalarType computeType = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var a = patternLastRow.to(computeType).index_select(2, imagePositions.to(patternLastRow.device).to(ScalarType.Int64));
        return a.mean(new long[] { 0, 1 }).MoveToOuterDisposeScope();
    }

    /// <summary>Attention mass of the last query on image positions and on all other (text) positions, [L, H] each.</summary>
    public static (Tensor Image, Tensor Text) Share(Tensor patternLastRow, Tensor imagePositions, ScalarType computeType = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var a = patternLastRow.to(computeType);
        var image = a.index_select(2, imagePositions.to(a.device).to(ScalarType.Int64)).sum(2);
        var text = a.sum(2) - image;
        return (image.MoveToOuterDisposeScope(), text.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The log-increase heatmap: position scores ([T], or [K, T] for K heads, summed over the heads) at the patches of the
    /// layout's grid (the class token, if any, is not a patch), min-max scaled, then divided by their sum (a constant map
    /// becomes uniform), laid out row-major on the grid. Returns [rows, cols]. <paramref name="grid"/> picks the grid: 0 is
    /// the base image (LLaVA-1.5's only grid, LLaVA-NeXT's downscaled whole image), 1 LLaVA-NeXT's unpadded high-resolution grid.
    /// </summary>
    public static Tensor LogIncreaseHeatmap(Tensor positionScores, ImageTokenLayout layout, int grid = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var g = layout.Grids[grid];
        var pos = tensor(layout.GridPositions(grid).Select(p => (long)p).ToArray(), device: positionScores.device);
        var s = positionScores.dim() == 1 ? positionScores : positionScores.sum(dim: 0);
        var x = s.index_select(0, pos);
        var min = x.min();
        var range = x.max() - min;
        var scaled = where(range > 0, (x - min) / where(range > 0, range, ones_like(range)), ones_like(x));
        return (scaled / scaled.sum()).reshape(g.Rows, g.Cols).MoveToOuterDisposeScope();
    }
}
