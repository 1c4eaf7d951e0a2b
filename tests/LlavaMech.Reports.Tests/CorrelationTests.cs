namespace LlavaMech.Reports.Tests;

/// <summary>Correlations and overlap on small vectors whose values are computed by hand in the comments.</summary>
public class CorrelationTests
{
    [Fact]
    public void Pearson_matches_the_hand_computed_value()
    {
        // x - mean = [-1.5, -0.5, 0.5, 1.5], y - mean = [-3, -1, 0, 4]: sxy = 11, sxx = 5, syy = 26, r = 11 / sqrt(130).
        Assert.Equal(11 / Math.Sqrt(130), Correlation.Pearson([1, 2, 3, 4], [2, 4, 5, 9]), 12);
        Assert.Equal(0.964764, Correlation.Pearson([1, 2, 3, 4], [2, 4, 5, 9]), 6);
        Assert.Equal(-1, Correlation.Pearson([1, 2, 3], [6, 4, 2]), 12);
    }

    [Fact]
    public void Spearman_uses_average_ranks_for_ties()
    {
        // ranks of y = [1, 2, 3.5, 5, 3.5]; against x's ranks 1..5: sxy = 8, sxx = 10, syy = 9.5, rho = 8 / sqrt(95).
        Assert.Equal(8 / Math.Sqrt(95), Correlation.Spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]), 12);
        Assert.Equal(0.820783, Correlation.Spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]), 6);
        // Monotone but not linear: Spearman 1, Pearson below 1.
        Assert.Equal(1, Correlation.Spearman([1, 2, 3, 4], [1, 4, 9, 100]), 12);
        Assert.True(Correlation.Pearson([1, 2, 3, 4], [1, 4, 9, 100]) < 0.9);
    }

    [Fact]
    public void Average_ranks_are_one_based_with_ties_sharing_their_mean()
    {
        Assert.Equal(new[] { 2, 3.5, 3.5, 1 }, Correlation.AverageRanks([10, 20, 20, 5]));
    }

    [Fact]
    public void A_constant_or_too_short_side_gives_NaN_and_unequal_lengths_are_refused()
    {
        Assert.True(double.IsNaN(Correlation.Pearson([1, 1, 1], [1, 2, 3])));
        Assert.True(double.IsNaN(Correlation.Spearman([1, 2, 3], [4, 4, 4])));
        Assert.True(double.IsNaN(Correlation.Pearson([1], [2])));
        Assert.Throws<ArgumentException>(() => Correlation.Pearson([1, 2], [1, 2, 3]));
    }

    [Fact]
    public void Jaccard_is_intersection_over_union()
    {
        Assert.Equal(0.5, Correlation.Jaccard(new HashSet<string> { "a", "b", "c" }, new HashSet<string> { "b", "c", "d" }));
        Assert.Equal(0.0, Correlation.Jaccard(new HashSet<int> { 1 }, new HashSet<int> { 2 }));
        Assert.Equal(1.0, Correlation.Jaccard(new HashSet<(int, int)> { (0, 1), (2, 3) }, new HashSet<(int, int)> { (2, 3), (0, 1) }));
        Assert.Equal(1.0, Correlation.Jaccard(new HashSet<int>(), new HashSet<int>()));
    }
}
