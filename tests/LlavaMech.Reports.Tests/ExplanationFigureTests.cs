using SkiaSharp;

namespace LlavaMech.Reports.Tests;

public class ExplanationFigureTests
{
    private static readonly SKColor[] Quadrant =
    [
        new(220, 40, 40), new(40, 200, 60), // top-left, top-right
        new(30, 60, 210), new(240, 240, 240), // bottom-left, bottom-right
    ];

    /// <summary>84x84 image whose four quadrants have distinct solid colours.</summary>
    private static byte[] QuadrantImage(int h, int w)
    {
        var px = new byte[h * w * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                var c = Quadrant[(y < h / 2 ? 0 : 2) + (x < w / 2 ? 0 : 1)];
                int i = (y * w + x) * 3;
                px[i] = c.Red; px[i + 1] = c.Green; px[i + 2] = c.Blue;
            }
        return px;
    }

    private static float[] HotCell(int side, int row, int col)
    {
        var g = new float[side * side];
        g[row * side + col] = 1f;
        return g;
    }

    [Fact]
    public void Three_panels_reproduce_image_and_place_heat_where_the_grids_say()
    {
        using var tmp = new TempDir();
        const int h = 84, w = 84, side = 6;
        var rgb = QuadrantImage(h, w);
        var raw = HotCell(side, 0, 0);   // raw attention: top-left
        var tool = HotCell(side, 5, 5);  // log increase: bottom-right
        string path = ExplanationFigure.Write(tmp.File("fig.png"), rgb, h, w, raw, tool, side, "What colour is the bus?");
        Assert.Equal(tmp.File("fig.png"), path);

        var L = ExplanationFigure.ComputeLayout(h, w);
        using var fig = Png.Load(path);
        Assert.Equal(L.Width, fig.Width);
        Assert.Equal(L.Height, fig.Height);
        Assert.Equal(4, L.Scale);                 // 84 px crops are upscaled to 336 px panels
        Assert.Equal(336, L.PanelWidth);
        Assert.True(fig.Width > 3 * 336);

        // Panel 1 is the image itself: each quadrant's centre has the input colour.
        int q = L.PanelWidth / 4;
        var centres = new[] { (q, q), (3 * q, q), (q, 3 * q), (3 * q, 3 * q) };
        for (int i = 0; i < 4; i++)
        {
            var (x, y) = centres[i];
            Png.Close(Quadrant[i], fig.GetPixel(L.PanelLeft[0] + x, L.PanelTop + y), 4, $"image quadrant {i}");
        }

        // Same image under both overlays, so warmth differences come from the heatmaps alone.
        int cell = L.PanelWidth / side, hotTL = cell / 2, hotBR = L.PanelWidth - cell / 2;
        SKColor Raw(int x, int y) => fig.GetPixel(L.PanelLeft[1] + x, L.PanelTop + y);
        SKColor Tool(int x, int y) => fig.GetPixel(L.PanelLeft[2] + x, L.PanelTop + y);
        Assert.True(Png.Warmth(Raw(hotTL, hotTL)) > Png.Warmth(Tool(hotTL, hotTL)) + 80, "raw attention hot at top-left");
        Assert.True(Png.Warmth(Tool(hotBR, hotBR)) > Png.Warmth(Raw(hotBR, hotBR)) + 80, "log increase hot at bottom-right");
        // Within one panel too: hot corner is warmer than the opposite corner despite the image underneath.
        Assert.True(Png.Warmth(Raw(hotTL, hotTL)) > Png.Warmth(Raw(hotBR, hotBR)));

        // The overlay panels are exactly HeatmapOverlay's output.
        using var expected = HeatmapOverlay.Render(rgb, h, w, raw, side, L.Scale);
        foreach (var (x, y) in new[] { (0, 0), (100, 37), (335, 335), (200, 300) })
            Png.Close(expected.GetPixel(x, y), Raw(x, y), 0, $"overlay pixel ({x},{y})");

        // Colour bar: red at the top, blue at the bottom.
        var bar = L.ColorBar;
        var top = fig.GetPixel(bar.MidX, bar.Top + 2);
        var bottom = fig.GetPixel(bar.MidX, bar.Bottom - 3);
        Assert.True(top.Red > 100 && top.Blue < 30, $"bar top {top}");
        Assert.True(bottom.Blue > 100 && bottom.Red < 30, $"bar bottom {bottom}");

        // Background outside panels is white.
        Png.Close(SKColors.White, fig.GetPixel(2, fig.Height - 2), 0, "background");
        Png.Close(SKColors.White, fig.GetPixel(L.PanelLeft[1] - 8, L.PanelTop + 100), 0, "gap between panels");
    }

    [Fact]
    public void Non_square_and_large_images_keep_aspect_and_are_not_upscaled_needlessly()
    {
        var small = ExplanationFigure.ComputeLayout(60, 100);
        Assert.Equal((4, 400, 240), (small.Scale, small.PanelWidth, small.PanelHeight));
        var large = ExplanationFigure.ComputeLayout(336, 336);
        Assert.Equal((1, 336, 336), (large.Scale, large.PanelWidth, large.PanelHeight));

        using var tmp = new TempDir();
        var rgb = Png.Solid(60, 100, 10, 20, 30);
        string path = ExplanationFigure.Write(tmp.File("sub/dir/f.png"), rgb, 60, 100, new float[9], new float[9], 3, "t",
            rawTitle: "attention (layer 15)", toolTitle: "ours");
        using var fig = Png.Load(path);
        Assert.Equal((small.Width, small.Height), (fig.Width, fig.Height));
    }

    [Fact]
    public void Rejects_grids_of_the_wrong_size()
    {
        using var tmp = new TempDir();
        var rgb = Png.Solid(4, 4, 0, 0, 0);
        Assert.Throws<ArgumentException>(() =>
            ExplanationFigure.Write(tmp.File("x.png"), rgb, 4, 4, new float[4], new float[9], 2, "t"));
    }
}
