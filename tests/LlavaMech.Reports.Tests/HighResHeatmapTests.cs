using SkiaSharp;

namespace LlavaMech.Reports.Tests;

/// <summary>LLaVA-NeXT's high-resolution map: each kept grid cell covers its region of the picture, newlines beside it.</summary>
public class HighResHeatmapTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-highres-").FullName;
    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [Theory]
    [InlineData(90, 200, 3, 7)]    // a wide picture: the kept grid is wider than tall
    [InlineData(220, 90, 8, 3)]    // a tall one
    public void The_hottest_cell_is_drawn_over_its_own_region_and_newlines_beside_it(int height, int width, int rows, int cols)
    {
        var picture = Path.Combine(_tmp, $"grey_{height}x{width}.png");
        using (var grey = new SKBitmap(width, height))
        {
            grey.Erase(new SKColor(128, 128, 128));
            using var data = grey.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(picture, data.ToArray());
        }
        int hotRow = rows - 1, hotCol = cols / 2, coldNewline = 0;
        var grid = new float[rows * cols];
        for (int i = 0; i < grid.Length; i++) grid[i] = 0.5f;
        grid[hotRow * cols + hotCol] = 1f;
        var newlines = Enumerable.Repeat(0.5f, rows).ToArray();
        newlines[coldNewline] = 0f;
        var path = HighResHeatmap.Write(Path.Combine(_tmp, "fig.png"), picture, grid, rows, cols, newlines, "test");

        using var fig = SKBitmap.Decode(path);
        var L = HighResHeatmap.ComputeLayout(height, width);
        Assert.Equal((L.Width, L.Height), (fig.Width, fig.Height));
        Assert.Equal(width > height, L.Picture.Width > L.Picture.Height);   // the picture keeps its aspect
        SKColor At(SKRectI r, int row, int col, int nRows, int nCols) =>
            fig.GetPixel(r.Left + (int)((col + 0.5) * r.Width / nCols), r.Top + (int)((row + 0.5) * r.Height / nRows));
        var hot = At(L.Picture, hotRow, hotCol, rows, cols);
        var mid = At(L.Picture, 0, 0, rows, cols);
        // jet(1) is dark red, jet(0.5) green-ish, both blended half over grey.
        Assert.True(hot.Red > hot.Blue + 40 && hot.Red > hot.Green + 40 && mid.Green > mid.Red + 40, $"hot cell {hot}, a middle cell {mid}");
        var cold = At(L.Strip, coldNewline, 0, rows, 1);
        Assert.True(cold.Blue > cold.Red + 60, $"the coldest newline is drawn blue, got {cold}");
        Assert.Throws<ArgumentException>(() => HighResHeatmap.Write(Path.Combine(_tmp, "bad.png"), picture, grid, rows, cols + 1, newlines, "x"));
    }
}
