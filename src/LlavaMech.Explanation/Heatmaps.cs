using LlavaMech.Analysis;

namespace LlavaMech.Explanation;

/// <summary>Per-patch maps derived from an example's statistics.</summary>
public static class Heatmaps
{
    /// <summary>
    /// The paper's log-increase map from the top <paramref name="heads"/> heads: their position
    /// scores at the image positions summed, min-max scaled, divided by the sum; [P] row-major.
    /// </summary>
    public static float[] LogIncrease(ExampleStatistics s, int heads)
    {
        var image = s.Image ?? throw new ArgumentException("the example has no image");
        var sum = new double[image.ImagePositions.Length];
        foreach (var h in s.TopHeads.Take(heads))
        {
            var scores = s.PositionsOf(h.Layer, h.Head) ?? throw new ArgumentException($"position scores of head {h.Layer}_{h.Head} were not computed; raise TopKHeads");
            for (int i = 0; i < sum.Length; i++) sum[i] += scores[image.ImagePositions[i]];
        }
        return MinMaxThenSum(sum);
    }

    /// <summary>The raw-attention baseline (mean over layers and heads of the last row), [P].</summary>
    public static float[] RawAttention(ExampleStatistics s) =>
        (s.Image ?? throw new ArgumentException("the example has no image")).AttentionBaseline.Select(v => (float)v).ToArray();

    public static float[] MinMaxThenSum(double[] v)
    {
        double lo = v.Min(), hi = v.Max();
        var scaled = v.Select(x => hi > lo ? (x - lo) / (hi - lo) : 0).ToArray();
        double total = scaled.Sum();
        return scaled.Select(x => (float)(total > 0 ? x / total : 0)).ToArray();
    }
}
