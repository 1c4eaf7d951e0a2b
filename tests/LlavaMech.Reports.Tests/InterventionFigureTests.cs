using ScottPlot;
using SkiaSharp;

namespace LlavaMech.Reports.Tests;

/// <summary><c>intervene</c>'s figures: clean vs edited bars per token, and the per-layer patching curve.</summary>
public class InterventionFigureTests
{
    [Fact]
    public void Token_bars_show_clean_left_and_edited_right_with_proportional_heights()
    {
        using var tmp = new TempDir();
        string[] tokens = ["red", "blue"];
        double[] clean = [0.4, 0.1], edited = [0.2, 0.3];
        using var png = Png.Load(InterventionFigure.WriteTokenBars(tmp.File("bars.png"), tokens, clean, edited, "t"));
        Assert.Equal((InterventionFigure.Width, InterventionFigure.Height), (png.Width, png.Height));

        var plot = InterventionFigure.BuildTokenBars(tokens, clean, edited, "t");
        plot.GetImage(InterventionFigure.Width, InterventionFigure.Height);
        float Height(double x, ScottPlot.Color color)
        {
            int px = (int)MathF.Round(plot.GetPixel(new Coordinates(x, 0)).X);
            var ys = Enumerable.Range(0, png.Height).Where(y => Png.IsNear(png.GetPixel(px, y), Png.ToSk(color), 10)).ToArray();
            Assert.True(ys.Length > 5, $"no bar at x = {x}");
            return ys.Max() - ys.Min();
        }
        float cleanRed = Height(-InterventionFigure.BarWidth / 2, Charts.AttentionColor);
        float editedRed = Height(InterventionFigure.BarWidth / 2, Charts.FfnColor);
        float editedBlue = Height(1 + InterventionFigure.BarWidth / 2, Charts.FfnColor);
        Assert.InRange(cleanRed / editedRed, 1.85, 2.15);   // 0.4 vs 0.2
        Assert.InRange(editedBlue / editedRed, 1.4, 1.6);   // 0.3 vs 0.2
    }

    [Fact]
    public void Layer_curve_writes_one_marker_per_layer_and_rejects_bad_input()
    {
        using var tmp = new TempDir();
        double[] deltas = [-0.5, -0.7, 0.1, 0.3]; // none on the zero line, which is drawn over the curve
        using var png = Png.Load(InterventionFigure.WriteLayerCurve(tmp.File("curve.png"), deltas, "t"));
        var plot = InterventionFigure.BuildLayerCurve(deltas, "t");
        plot.GetImage(InterventionFigure.Width, InterventionFigure.Height);
        for (int l = 0; l < deltas.Length; l++)
        {
            var p = plot.GetPixel(new Coordinates(l, deltas[l]));
            Png.Close(Png.ToSk(Charts.AttentionColor), png.GetPixel((int)MathF.Round(p.X), (int)MathF.Round(p.Y)), 40, $"layer {l}");
        }
        Assert.Throws<ArgumentException>(() => InterventionFigure.BuildLayerCurve([], "t"));
        Assert.Throws<ArgumentException>(() => InterventionFigure.BuildLayerCurve([double.NaN], "t"));
        Assert.Throws<ArgumentException>(() => InterventionFigure.BuildTokenBars(["a"], [0.1, 0.2], [0.1], "t"));
    }
}
