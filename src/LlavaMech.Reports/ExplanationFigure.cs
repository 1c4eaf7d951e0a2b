using SkiaSharp;

namespace LlavaMech.Reports;

/// <summary>
/// The paper's explanation figure: the input image, the raw-attention heatmap over it and the
/// log-probability-increase heatmap over it, side by side, with a shared colour bar.
/// </summary>
public static class ExplanationFigure
{
    /// <summary>Panels are upscaled (by an integer factor) to at least this width so small crops stay readable.</summary>
    public const int MinPanelWidth = 336;

    public const string DefaultImageTitle = "input image";
    public const string DefaultRawTitle = "raw attention";
    public const string DefaultToolTitle = "log-probability increase";

    private const int Margin = 16, Gap = 16, FigureTitleHeight = 40, PanelTitleHeight = 30;
    private const int BarWidth = 18, BarLabelWidth = 56;

    /// <summary>Where everything sits; internal so tests can sample pixels at known places.</summary>
    internal readonly record struct Layout(
        int Width, int Height, int Scale, int PanelWidth, int PanelHeight, int PanelTop, int[] PanelLeft, SKRectI ColorBar);

    internal static Layout ComputeLayout(int height, int width)
    {
        int scale = Math.Max(1, (MinPanelWidth + width - 1) / width);
        int pw = width * scale, ph = height * scale;
        int top = Margin + FigureTitleHeight + PanelTitleHeight;
        var lefts = new int[3];
        for (int i = 0; i < 3; i++) lefts[i] = Margin + i * (pw + Gap);
        int barLeft = lefts[2] + pw + Gap + 4;
        var bar = new SKRectI(barLeft, top, barLeft + BarWidth, top + ph);
        int figW = bar.Right + BarLabelWidth + Margin;
        int figH = top + ph + Margin;
        return new Layout(figW, figH, scale, pw, ph, top, lefts, bar);
    }

    /// <summary>
    /// Writes the three-panel figure as PNG to <paramref name="path"/> and returns the path.
    /// <paramref name="croppedRgb"/> is [height, width, 3] uint8 (the image region the patch grid covers);
    /// both grids are gridSide x gridSide, row-major, row 0 = top. Each heatmap is min-max normalised on
    /// its own, so the colour bar reads "low .. high" within each panel.
    /// </summary>
    public static string Write(string path, byte[] croppedRgb, int height, int width,
        float[] rawAttentionGrid, float[] logIncreaseGrid, int gridSide, string title,
        string? rawTitle = null, string? toolTitle = null)
    {
        using var figure = Render(croppedRgb, height, width, rawAttentionGrid, logIncreaseGrid, gridSide, title, rawTitle, toolTitle);
        return Drawing.SavePng(figure, path);
    }

    internal static SKBitmap Render(byte[] rgb, int height, int width,
        float[] rawGrid, float[] toolGrid, int gridSide, string title, string? rawTitle, string? toolTitle)
    {
        HeatmapOverlay.CheckGrid(rawGrid, gridSide);
        HeatmapOverlay.CheckGrid(toolGrid, gridSide);
        var L = ComputeLayout(height, width);

        using var src = Drawing.FromRgb(rgb, height, width);
        using var imagePanel = Drawing.Upscale(src, L.Scale);
        using var rawPanel = HeatmapOverlay.Render(rgb, height, width, rawGrid, gridSide, L.Scale);
        using var toolPanel = HeatmapOverlay.Render(rgb, height, width, toolGrid, gridSide, L.Scale);

        var figure = new SKBitmap(new SKImageInfo(L.Width, L.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(figure);
        canvas.Clear(SKColors.White);

        Drawing.DrawCentered(canvas, title ?? "", L.Width / 2f, Margin + 26, 20, L.Width - 2 * Margin, SKColors.Black);

        var panels = new[] { imagePanel, rawPanel, toolPanel };
        var titles = new[] { DefaultImageTitle, rawTitle ?? DefaultRawTitle, toolTitle ?? DefaultToolTitle };
        for (int i = 0; i < 3; i++)
        {
            canvas.DrawBitmap(panels[i], L.PanelLeft[i], L.PanelTop);
            Drawing.DrawCentered(canvas, titles[i], L.PanelLeft[i] + L.PanelWidth / 2f, L.PanelTop - 9, 15, L.PanelWidth, SKColors.Black);
        }

        DrawColorBar(canvas, L.ColorBar);
        return figure;
    }

    /// <summary>
    /// The jet scale, high at the top, in pure (unblended) colours: blending over white would not match
    /// the overlays either, since they blend over the image. Labels give the normalised range.
    /// </summary>
    private static void DrawColorBar(SKCanvas canvas, SKRectI bar)
    {
        for (int y = bar.Top; y < bar.Bottom; y++)
        {
            double t = 1 - (y - bar.Top + 0.5) / bar.Height;
            var (r, g, b) = Colormaps.Jet(t);
            using var p = new SKPaint { Color = new SKColor(r, g, b) };
            canvas.DrawRect(bar.Left, y, bar.Width, 1, p);
        }
        using var frame = new SKPaint { Color = SKColors.Black, Style = SKPaintStyle.Stroke, StrokeWidth = 1 };
        canvas.DrawRect(bar.Left - 0.5f, bar.Top - 0.5f, bar.Width + 1, bar.Height + 1, frame);
        float x = bar.Right + 5;
        Drawing.DrawLeft(canvas, "high", x, bar.Top + 11, 12, SKColors.Black);
        Drawing.DrawLeft(canvas, "0.5", x, bar.MidY + 4, 12, SKColors.Black);
        Drawing.DrawLeft(canvas, "low", x, bar.Bottom - 2, 12, SKColors.Black);
        // The unit: each panel is min-max normalised on its own (no physical unit survives that).
        canvas.Save();
        float lx = bar.Right + 42, ly = bar.MidY;
        canvas.RotateDegrees(90, lx, ly);
        Drawing.DrawCentered(canvas, "normalised score (min-max per panel)", lx, ly + 4, 11, Math.Max(bar.Height, 120), SKColors.Black);
        canvas.Restore();
    }
}
