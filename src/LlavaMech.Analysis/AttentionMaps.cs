using TorchSharp;
using static TorchSharp.torch;

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
    /// The log-increase heatmap: position scores ([T], or [K, T] for K heads, summed over the heads) at the image positions,
    /// min-max scaled, then divided by their sum (a constant map becomes uniform), laid out on the side x side grid
    /// (row-major). P must be side^2, or side^2 + 1 with the CLS feature first (strategy "full"), which is dropped.
    /// Returns [side, side].
    /// </summary>
    public static Tensor LogIncreaseHeatmap(Tensor positionScores, Tensor imagePositions)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var pos = imagePositions.to(positionScores.device).to(ScalarType.Int64).reshape(-1);
        long P = pos.shape[0];
        long side = GridSide(P);
        if (side * side != P) pos = pos.narrow(0, 1, side * side);
        var s = positionScores.dim() == 1 ? positionScores : positionScores.sum(dim: 0);
        var x = s.index_select(0, pos);
        var min = x.min();
        var range = x.max() - min;
        var scaled = where(range > 0, (x - min) / where(range > 0, range, ones_like(range)), ones_like(x));
        return (scaled / scaled.sum()).reshape(side, side).MoveToOuterDisposeScope();
    }

    /// <summary>sqrt(P) for P = side^2 (or side^2 + 1, a CLS feature first); throws otherwise.</summary>
    public static long GridSide(long imageTokens)
    {
        long side = (long)Math.Round(Math.Sqrt(imageTokens));
        if (side * side == imageTokens) return side;
        side = (long)Math.Round(Math.Sqrt(imageTokens - 1));
        if (side * side == imageTokens - 1) return side;
        throw new ArgumentException($"{imageTokens} image tokens do not form a square grid (with or without a CLS feature)");
    }
}
