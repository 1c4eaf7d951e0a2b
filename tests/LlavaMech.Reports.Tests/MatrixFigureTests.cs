using SkiaSharp;

namespace LlavaMech.Reports.Tests;

/// <summary>Labelled share matrices (confusion matrices): uniform cells where the layout says, white for 0, dark for 1, a colour bar.</summary>
public class MatrixFigureTests
{
    [Fact]
    public void Every_cell_is_the_same_size_in_its_place_with_its_colour_from_corner_to_corner()
    {
        using var tmp = new TempDir();
        var v = new double[2, 3];
        v[0, 0] = 1.0;          // top-left: dark
        v[1, 2] = 0.5;          // bottom-right: half
        v[1, 1] = double.NaN;   // grey
        string[] rows = ["red", "blue"], cols = ["red", "blue", "(other)"];
        using var png = Png.Load(MatrixFigure.Write(tmp.File("m.png"), v, rows, cols, "t", "expected", "answered", "share"));
        var layout = MatrixFigure.ComputeLayout(2, 3);
        Assert.Equal((layout.Width, layout.Height), (png.Width, png.Height));

        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 3; c++)
            {
                var rect = layout.CellRect(r, c);
                Assert.Equal((MatrixFigure.Cell, MatrixFigure.Cell), (rect.Width, rect.Height));
                var want = double.IsNaN(v[r, c]) ? new SKColor(160, 160, 160) : MatrixFigure.Color(v[r, c]);
                // The four corners (inside the cell, clear of the printed value) have the cell's colour exactly.
                foreach (var (x, y) in new[] { (rect.Left + 1, rect.Top + 1), (rect.Right - 2, rect.Top + 1), (rect.Left + 1, rect.Bottom - 2), (rect.Right - 2, rect.Bottom - 2) })
                    Assert.Equal(want, png.GetPixel(x, y));
            }
        // Cells meet exactly: the last column of the dark cell and the first of its white neighbour.
        var dark = layout.CellRect(0, 0);
        Assert.Equal(MatrixFigure.Color(1), png.GetPixel(dark.Right - 1, dark.MidY - 15));
        Assert.Equal(MatrixFigure.Color(0), png.GetPixel(dark.Right, dark.MidY - 15));
        Assert.True(MatrixFigure.Color(1) is { Blue: > 80, Red: < 40 } && MatrixFigure.Color(0) is { Red: > 240, Green: > 240 });
        var half = MatrixFigure.Color(0.5);
        Assert.True(half.Red > MatrixFigure.Color(1).Red + 40 && half.Red < MatrixFigure.Color(0).Red - 40, $"0.5 between, got {half}");

        // The colour bar runs from the dark end on top to white at the bottom.
        var bar = layout.ColorBar;
        Assert.Equal(MatrixFigure.Color(1 - 0.5 / bar.Height), png.GetPixel(bar.MidX, bar.Top));
        Assert.True(png.GetPixel(bar.MidX, bar.Bottom - 1) is { Red: > 240, Green: > 240, Blue: > 240 });
    }

    [Fact]
    public void Values_outside_shares_and_mismatched_labels_are_refused()
    {
        using var tmp = new TempDir();
        Assert.Throws<ArgumentException>(() => MatrixFigure.Write(tmp.File("a.png"), new double[1, 1] { { 2 } }, ["a"], ["a"], "t", "r", "c", "u"));
        Assert.Throws<ArgumentException>(() => MatrixFigure.Write(tmp.File("b.png"), new double[1, 2], ["a"], ["a"], "t", "r", "c", "u"));
    }
}
