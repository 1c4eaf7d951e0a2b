using SkiaSharp;
using ScottPlot;

namespace LlavaMech.Reports.Tests;

public class LayerBarsTests
{
    [Fact]
    public void Positive_and_negative_bars_sit_on_opposite_sides_of_zero()
    {
        using var tmp = new TempDir();
        double[] attn = [1.0, -0.5, 0.2, 0.0];
        double[] ffn = [-0.8, 0.6, 0.1, 0.3];
        string path = LayerBars.Write(tmp.File("bars.png"), attn, ffn, "Layer contributions");
        using var png = Png.Load(path);
        Assert.Equal((LayerBars.Width, LayerBars.Height), (png.Width, png.Height));

        // Same plot rendered at the same size gives the coordinate -> pixel mapping for the file.
        var plot = LayerBars.Build(attn, ffn, "Layer contributions");
        plot.GetImage(LayerBars.Width, LayerBars.Height);
        float zeroY = plot.GetPixel(new Coordinates(0, 0)).Y;
        var blue = Png.ToSk(Charts.AttentionColor);
        var orange = Png.ToSk(Charts.FfnColor);

        // Extent of a bar's colour along the vertical line through its centre.
        (float Top, float Bottom) Run(double xCoord, SKColor color)
        {
            int x = (int)MathF.Round(plot.GetPixel(new Coordinates(xCoord, 0)).X);
            var ys = Enumerable.Range(0, png.Height).Where(y => Png.IsNear(png.GetPixel(x, y), color, 10)).ToArray();
            Assert.True(ys.Length > 5, $"no bar of colour {color} at x = {xCoord}");
            return (ys.Min(), ys.Max());
        }

        var a0 = Run(0 - LayerBars.Offset, blue);   // +1.0: above zero
        var a1 = Run(1 - LayerBars.Offset, blue);   // -0.5: below zero
        var f0 = Run(0 + LayerBars.Offset, orange); // -0.8: below zero
        var f1 = Run(1 + LayerBars.Offset, orange); // +0.6: above zero
        Assert.True(a0.Bottom <= zeroY + 1 && a0.Top < zeroY - 20, $"attention layer 0 {a0} vs zero {zeroY}");
        Assert.True(a1.Top >= zeroY - 1 && a1.Bottom > zeroY + 20, $"attention layer 1 {a1} vs zero {zeroY}");
        Assert.True(f0.Top >= zeroY - 1 && f0.Bottom > zeroY + 20, $"FFN layer 0 {f0} vs zero {zeroY}");
        Assert.True(f1.Bottom <= zeroY + 1 && f1.Top < zeroY - 20, $"FFN layer 1 {f1} vs zero {zeroY}");
        // Heights are proportional to the values: |+1.0| is twice |-0.5|.
        float h0 = a0.Bottom - a0.Top, h1 = a1.Bottom - a1.Top;
        Assert.InRange(h0 / h1, 1.85, 2.15);
    }

    [Fact]
    public void Rejects_mismatched_layer_counts_and_nan()
    {
        Assert.Throws<ArgumentException>(() => LayerBars.Build([1, 2], [1], "t"));
        Assert.Throws<ArgumentException>(() => LayerBars.Build([double.NaN], [1], "t"));
    }
}

public class HeadHeatmapTests
{
    private static SKColor At(SKBitmap png, HeadHeatmap.Layout l, int layer, int head)
    {
        var r = l.CellRect(layer, head);
        return png.GetPixel(r.MidX, r.MidY);
    }

    [Fact]
    public void Diverging_colours_are_centred_at_zero_with_layer_zero_at_the_bottom()
    {
        using var tmp = new TempDir();
        var v = new double[4, 3];           // 4 layers x 3 heads
        v[3, 0] = 2.0;                      // top-left cell: strongly positive
        v[0, 2] = -2.0;                     // bottom-right cell: strongly negative
        v[1, 2] = -1.0;                     // half as negative
        v[2, 1] = double.NaN;
        string path = HeadHeatmap.Write(tmp.File("heads.png"), v, "Head contributions");
        using var png = Png.Load(path);
        Assert.Equal((HeadHeatmap.Width, HeadHeatmap.Height), (png.Width, png.Height));
        var L = HeadHeatmap.ComputeLayout(4, 3);
        Assert.True(L.CellRect(3, 0).Top < L.CellRect(0, 0).Top, "layer 0 is the bottom row");

        var pos = At(png, L, 3, 0);
        var neg = At(png, L, 0, 2);
        var halfNeg = At(png, L, 1, 2);
        var zero = At(png, L, 1, 1);
        var nan = At(png, L, 2, 1);
        Assert.True(pos.Red > 80 && pos.Red > pos.Blue + 50, $"positive cell should be red, got {pos}");
        Assert.True(neg.Blue > 60 && neg.Blue > neg.Red + 40, $"negative cell should be blue, got {neg}");
        Assert.True(zero.Red > 235 && zero.Green > 235 && zero.Blue > 235, $"zero cell should be near white, got {zero}");
        // Half the magnitude is lighter (closer to white) than the full magnitude.
        Assert.True(halfNeg.Red > neg.Red + 40 && halfNeg.Blue > halfNeg.Red, $"half-negative {halfNeg} vs negative {neg}");
        Assert.True(Math.Abs(nan.Red - nan.Blue) < 10 && nan.Red < 200, $"NaN cell should be grey, got {nan}");

        // Colour bar right of the map: red at the top, blue at the bottom.
        var bar = L.ColorBar;
        Assert.True(bar.Left > L.GridLeft + L.GridWidth);
        var top = png.GetPixel(bar.MidX, bar.Top + 1);
        var bottom = png.GetPixel(bar.MidX, bar.Bottom - 2);
        Assert.True(top.Red > 90 && top.Green < 30 && top.Blue < 50, $"top of the colour bar {top}");
        Assert.True(bottom.Blue > 80 && bottom.Red < 30 && bottom.Green < 70, $"bottom of the colour bar {bottom}");
        // The unit is drawn to the right of the bar's numbers: dark pixels there.
        int dark = 0;
        for (int x = bar.Right + 70; x < Math.Min(png.Width, bar.Right + 95); x++)
            for (int y = bar.Top; y < bar.Bottom; y++)
                if (png.GetPixel(x, y).Red < 100) dark++;
        Assert.True(dark > 50, "the colour bar's label (unit) should be drawn beside it");
    }

    [Theory]
    [InlineData(3, 4)]
    [InlineData(32, 32)]
    [InlineData(40, 40)]
    [InlineData(7, 13)]
    public void Cells_are_uniform_and_ticks_centred_on_them(int layers, int heads)
    {
        // A checkerboard of +1/-1: every colour change along a row or a column is a cell edge.
        using var tmp = new TempDir();
        var v = new double[layers, heads];
        for (int l = 0; l < layers; l++)
            for (int h = 0; h < heads; h++)
                v[l, h] = (l + h) % 2 == 0 ? 1 : -1;
        using var png = Png.Load(HeadHeatmap.Write(tmp.File("check.png"), v, "checkerboard"));
        var L = HeadHeatmap.ComputeLayout(layers, heads);
        static List<int> Edges(Func<int, SKColor> at, int from, int to)
        {
            var edges = new List<int> { from };
            for (int i = from + 1; i < to; i++)
                if (Png.Warmth(at(i)) * Png.Warmth(at(i - 1)) < 0) edges.Add(i);
            edges.Add(to);
            return edges;
        }
        int midY = L.CellRect(0, 0).MidY, midX = L.CellRect(0, 0).MidX;
        var xs = Edges(x => png.GetPixel(x, midY), L.GridLeft, L.GridLeft + L.GridWidth);
        var ys = Edges(y => png.GetPixel(midX, y), L.GridTop, L.GridTop + L.GridHeight);
        Assert.Equal(heads + 1, xs.Count);
        Assert.Equal(layers + 1, ys.Count);
        Assert.All(xs.Zip(xs.Skip(1), (a, b) => b - a), w => Assert.Equal(L.Cell, w));
        Assert.All(ys.Zip(ys.Skip(1), (a, b) => b - a), h => Assert.Equal(L.Cell, h));
        for (int h = 0; h < heads; h++) Assert.Equal((xs[h] + xs[h + 1]) / 2.0, L.HeadTickX(h), 0.51);
        for (int l = 0; l < layers; l++) Assert.Equal((ys[layers - 1 - l] + ys[layers - l]) / 2.0, L.LayerTickY(l), 0.51);
    }

    [Fact]
    public void All_zero_map_renders_white()
    {
        using var tmp = new TempDir();
        var v = new double[2, 2];
        using var png = Png.Load(HeadHeatmap.Write(tmp.File("z.png"), v, "zeros"));
        var c = At(png, HeadHeatmap.ComputeLayout(2, 2), 1, 1);
        Assert.True(c.Red > 235 && c.Green > 235 && c.Blue > 235, $"got {c}");
    }
}

public class DiffHeatmapTests
{
    [Fact]
    public void Difference_is_red_where_a_is_higher_and_blue_where_b_is()
    {
        var a = new double[,] { { 1, 0 }, { 0, 0.5 } };
        var b = new double[,] { { 0, 0 }, { 0, 1.5 } };
        var d = DiffHeatmap.Subtract(a, b);
        Assert.Equal(new double[,] { { 1, 0 }, { 0, -1 } }, d);

        using var tmp = new TempDir();
        using var png = Png.Load(DiffHeatmap.Write(tmp.File("diff.png"), a, b, "VQA", "captioning"));
        var L = HeadHeatmap.ComputeLayout(2, 2);
        SKColor At(int layer, int head) => png.GetPixel(L.CellRect(layer, head).MidX, L.CellRect(layer, head).MidY);
        Assert.True(Png.Warmth(At(0, 0)) > 60, $"layer 0 head 0 (A higher) should be red, got {At(0, 0)}");
        Assert.True(Png.Warmth(At(1, 1)) < -60, $"layer 1 head 1 (B higher) should be blue, got {At(1, 1)}");
        Assert.Throws<ArgumentException>(() => DiffHeatmap.Subtract(a, new double[3, 2]));
    }
}

public class CurvePlotTests
{
    [Fact]
    public void Series_are_drawn_over_fraction_axis_in_palette_order()
    {
        using var tmp = new TempDir();
        var curves = new Dictionary<string, double[]>
        {
            ["deletion"] = [1.0, 0.5, 0.25, 0.1, 0.0],
            ["insertion"] = [0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 1.0, 1.0, 1.0], // different length, same 0..1 axis
        };
        string path = CurvePlot.Write(tmp.File("curves.png"), curves, "fraction of patches", "answer probability", "Deletion / insertion");
        using var png = Png.Load(path);
        Assert.Equal((CurvePlot.Width, CurvePlot.Height), (png.Width, png.Height));

        var plot = CurvePlot.Build(curves, "fraction of patches", "answer probability", "Deletion / insertion");
        plot.GetImage(CurvePlot.Width, CurvePlot.Height);
        var c0 = Png.ToSk(CurvePlot.Palette.GetColor(0));
        var c1 = Png.ToSk(CurvePlot.Palette.GetColor(1));
        Pixel P(double x, double y) => plot.GetPixel(new Coordinates(x, y));

        // deletion passes (0.5, 0.25) and insertion (0.5, 0.9): x = i / (n - 1) for each series.
        Assert.True(Png.AnyNear(png, P(0.5, 0.25).X, P(0.5, 0.25).Y, 2, c0, 20), "deletion curve at (0.5, 0.25)");
        Assert.True(Png.AnyNear(png, P(0.5, 0.9).X, P(0.5, 0.9).Y, 2, c1, 20), "insertion curve at (0.5, 0.9)");
        Assert.False(Png.AnyNear(png, P(0.5, 0.6).X, P(0.5, 0.6).Y, 2, c0, 20), "nothing at (0.5, 0.6)");
        Assert.False(Png.AnyNear(png, P(0.5, 0.6).X, P(0.5, 0.6).Y, 2, c1, 20), "nothing at (0.5, 0.6)");
        // Axis spans exactly 0..1: the last insertion point lies on the right edge of the data area.
        Assert.Equal(plot.LastRender.DataRect.Right, P(1, 1).X, 1.0);
    }

    [Fact]
    public void Xs_are_evenly_spaced_from_zero_to_one()
    {
        Assert.Equal(new[] { 0.0 }, CurvePlot.Xs(1));
        Assert.Equal(new[] { 0, 0.25, 0.5, 0.75, 1 }, CurvePlot.Xs(5));
        Assert.Throws<ArgumentException>(() => CurvePlot.Build(new Dictionary<string, double[]> { ["e"] = [] }, "x", "y", "t"));
    }
}
