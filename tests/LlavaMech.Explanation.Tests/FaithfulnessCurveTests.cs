namespace LlavaMech.Explanation.Tests;

/// <summary>The AUC by which compare-methods and score-methods rank methods, on curves integrated by hand.</summary>
public class FaithfulnessCurveTests
{
    [Fact]
    public void Auc_is_the_trapezoid_area_on_the_curve_points()
    {
        // A straight fall from 1 to 0: area 1/2.
        Assert.Equal(0.5, new FaithfulnessCurve([0, 0.5, 1], [1, 0.5, 0]).Auc, 12);
        // Unequal steps: 0.25 * (0.8 + 0.4) / 2 + 0.75 * (0.4 + 0.2) / 2 = 0.15 + 0.225.
        Assert.Equal(0.375, new FaithfulnessCurve([0, 0.25, 1], [0.8, 0.4, 0.2]).Auc, 12);
        // A faster fall (a more faithful order) has the lower deletion AUC.
        Assert.True(new FaithfulnessCurve([0, 0.5, 1], [1, 0.1, 0]).Auc < new FaithfulnessCurve([0, 0.5, 1], [1, 0.9, 0]).Auc);
        Assert.Equal(0, new FaithfulnessCurve([0], [0.7]).Auc);
    }
}
