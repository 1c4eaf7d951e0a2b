using ScottPlot;
using SkiaSharp;

namespace LlavaMech.Reports.Tests;

/// <summary>Labelled share matrices (confusion matrices): cells on their labels, white for 0, dark for 1, a colour bar.</summary>
public class MatrixFigureTests
{
    [Fact]
    public void Cells_are_uniform_and_centred_on_their_labels_with_the_first_row_on_top()
    {
        using var tmp = new TempDir();
        var v = new double[2, 3];
        v[0, 0] = 1.0;          // top-left: dark
        v[1, 2] = 0.5;          // bottom-right: half
        v[1, 1] = double.NaN;   // grey
        string[] rows = ["red", "blue"], cols = ["red", "blue", "(other)"];
        string path = MatrixFigure.Write(tmp.File("m.png"), v, rows, cols, "t", "expected", "answered", "share");
        using var png = Png.Load(path);
        var (w, h) = MatrixFigure.Size(2, 3);
        Assert.Equal((w, h), (png.Width, png.Height));
        var plot = MatrixFigure.Build(v, rows, cols, "t", "expected", "answered", "share");
        plot.GetImage(w, h);

        SKColor At(double x, double y)
        {
            var p = plot.GetPixel(new Coordinates(x, y));
            return png.GetPixel((int)MathF.Round(p.X), (int)MathF.Round(p.Y));
        }
        // Row 0 is drawn at y = 1 (top), row 1 at y = 0; sample off-centre to miss the printed values.
        var full = At(0 - 0.3, 1 + 0.3);
        var half = At(2 - 0.3, 0 + 0.3);
        var zero = At(1 - 0.3, 1 + 0.3);
        var nan = At(1 - 0.3, 0 + 0.3);
        Assert.True(full.Blue > 80 && full.Red < 40, $"1.0 should be dark blue, got {full}");
        Assert.True(zero.Red > 240 && zero.Green > 240 && zero.Blue > 240, $"0 should be white, got {zero}");
        Assert.True(half.Red > full.Red + 40 && half.Red < zero.Red - 40, $"0.5 between, got {half}");
        Assert.True(Math.Abs(nan.Red - nan.Blue) < 10 && nan.Red < 200, $"NaN should be grey, got {nan}");

        // Uniform cells: every column and every row spans the same number of pixels.
        var a = plot.GetPixel(new Coordinates(-0.5, -0.5));
        var b = plot.GetPixel(new Coordinates(0.5, 0.5));
        var c = plot.GetPixel(new Coordinates(2.5, 1.5));
        Assert.Equal(b.X - a.X, (c.X - a.X) / 3, 1);
        Assert.Equal(a.Y - b.Y, (a.Y - c.Y) / 2, 1);
        Assert.InRange(b.X - a.X, 0.8 * (a.Y - b.Y), 1.25 * (a.Y - b.Y));   // near-square cells

        // The colour bar right of the matrix holds the dark end.
        var data = plot.LastRender.DataRect;
        bool dark = false;
        for (int y = (int)data.Top; y < (int)data.Bottom; y += 2)
            for (int x = (int)data.Right + 5; x < png.Width; x += 2)
                dark |= png.GetPixel(x, y) is var p && p.Blue > 80 && p.Red < 30;
        Assert.True(dark, "colour bar expected right of the matrix");
    }

    [Fact]
    public void Values_outside_shares_and_mismatched_labels_are_refused()
    {
        using var tmp = new TempDir();
        Assert.Throws<ArgumentException>(() => MatrixFigure.Write(tmp.File("a.png"), new double[1, 1] { { 2 } }, ["a"], ["a"], "t", "r", "c", "u"));
        Assert.Throws<ArgumentException>(() => MatrixFigure.Write(tmp.File("b.png"), new double[1, 2], ["a"], ["a"], "t", "r", "c", "u"));
    }
}
