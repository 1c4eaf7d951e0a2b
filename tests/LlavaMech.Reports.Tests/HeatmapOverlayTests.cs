using SkiaSharp;

namespace LlavaMech.Reports.Tests;

public class HeatmapOverlayTests
{
    [Fact]
    public void Output_is_the_image_size_times_scale()
    {
        var rgb = Png.Solid(10, 20, 90, 90, 90);
        using var bmp = HeatmapOverlay.Render(rgb, 10, 20, new float[16], 4, 3);
        Assert.Equal(60, bmp.Width);
        Assert.Equal(30, bmp.Height);
    }

    [Fact]
    public void Blend_is_half_image_half_jet()
    {
        // A constant grid normalises to 0 everywhere -> jet(0) = (0, 0, 128); 0.5/0.5 blend.
        var rgb = Png.Solid(8, 8, 100, 150, 200);
        using var bmp = HeatmapOverlay.Render(rgb, 8, 8, new float[] { 3, 3, 3, 3 }, 2, 2);
        Png.Close(new SKColor(50, 75, 164), bmp.GetPixel(7, 9), 1, "blend");
    }

    [Fact]
    public void Alpha_zero_reproduces_the_image()
    {
        var rgb = Png.Solid(6, 6, 12, 200, 77);
        using var bmp = HeatmapOverlay.Render(rgb, 6, 6, new float[] { 0, 1, 2, 3 }, 2, 4, alpha: 0f);
        for (int y = 0; y < bmp.Height; y += 5)
            for (int x = 0; x < bmp.Width; x += 5)
                Png.Close(new SKColor(12, 200, 77), bmp.GetPixel(x, y), 1, $"({x},{y})");
    }

    [Fact]
    public void Hottest_cell_is_redder_than_coldest()
    {
        // 4x4 grid over a grey image: top-left cell hottest, bottom-right coldest.
        var grid = new float[16];
        for (int i = 0; i < 16; i++) grid[i] = 0.2f;
        grid[0] = 5f;
        grid[15] = -1f;
        var rgb = Png.Solid(16, 16, 128, 128, 128);
        using var bmp = HeatmapOverlay.Render(rgb, 16, 16, grid, 4, 4); // 64x64, cells of 16 px
        var hot = bmp.GetPixel(8, 8);
        var cold = bmp.GetPixel(56, 56);
        Assert.True(hot.Red > hot.Blue + 40, $"hot cell should be red, got {hot}");
        Assert.True(cold.Blue > cold.Red + 40, $"cold cell should be blue, got {cold}");
        Assert.True(Png.Warmth(hot) > Png.Warmth(cold) + 100);
        // Row 0 of the grid is the top of the image: the top-right cell (value 0.2 of a -1..5 range) is cool.
        Assert.True(Png.Warmth(bmp.GetPixel(56, 8)) < Png.Warmth(hot) - 50);
    }

    [Fact]
    public void Upsampling_is_smooth_not_blocky()
    {
        // Left column cold, right column hot: nearest-neighbour would jump from jet(0) to jet(1) in one pixel.
        var rgb = Png.Solid(8, 8, 128, 128, 128);
        using var bmp = HeatmapOverlay.Render(rgb, 8, 8, new float[] { 0, 1, 0, 1 }, 2, 8); // 64x64
        var row = Enumerable.Range(0, bmp.Width).Select(x => bmp.GetPixel(x, 32)).ToArray();
        int maxStep = 0;
        for (int x = 1; x < row.Length; x++)
            maxStep = Math.Max(maxStep, new[]
            {
                Math.Abs(row[x].Red - row[x - 1].Red), Math.Abs(row[x].Green - row[x - 1].Green), Math.Abs(row[x].Blue - row[x - 1].Blue),
            }.Max());
        Assert.True(maxStep <= 32, $"largest jump between neighbouring pixels is {maxStep}");
        Assert.True(row.Distinct().Count() >= 15, $"only {row.Distinct().Count()} distinct colours along the row");
        Assert.True(Png.Warmth(row[^1]) > Png.Warmth(row[0]) + 100);
    }

    [Fact]
    public void Upsample_at_scale_one_is_identity_and_constant_stays_constant()
    {
        var grid = new float[] { 0f, 0.25f, 0.5f, 1f, 0.75f, 0.1f, 0.3f, 0.9f, 0.6f };
        Assert.Equal(grid, HeatmapOverlay.Upsample(grid, 3, 3, 3));
        var flat = HeatmapOverlay.Upsample(Enumerable.Repeat(0.4f, 9).ToArray(), 3, 17, 23);
        Assert.Equal(17 * 23, flat.Length);
        Assert.All(flat, v => Assert.Equal(0.4f, v, 1e-5f));
    }

    [Fact]
    public void Normalize_maps_min_max_to_unit_range()
    {
        Assert.Equal(new[] { 0f, 0.5f, 1f, 0f }, HeatmapOverlay.Normalize(new[] { -2f, 0f, 2f, float.NaN }));
        Assert.Equal(new[] { 0f, 0f }, HeatmapOverlay.Normalize(new[] { 7f, 7f }));
    }

    [Fact]
    public void Rejects_mismatched_sizes()
    {
        Assert.Throws<ArgumentException>(() => HeatmapOverlay.Render(new byte[10], 2, 2, new float[4], 2, 1));
        Assert.Throws<ArgumentException>(() => HeatmapOverlay.Render(new byte[12], 2, 2, new float[5], 2, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => HeatmapOverlay.Render(new byte[12], 2, 2, new float[4], 2, 0));
    }
}
