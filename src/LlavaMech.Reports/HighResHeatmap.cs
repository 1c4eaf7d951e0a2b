using SkiaSharp;

namespace LlavaMech.Reports;

/// <summary>
/// LLaVA-NeXT's high-resolution map: the kept (unpadded) feature grid of R x C cells drawn over the original picture, one
/// flat cell per feature (the padding is removed, so the grid spans the picture and each cell covers its region), and the
/// R row-ending newline tokens as a strip beside it, on the same colour scale (min-max over grid and newlines together).
/// </summary>
public static class HighResHeatmap
{
    /// <summary>The longer side of the drawn picture.</summary>
    public const int PictureSide = 560;
    public const float Alpha = 0.5f;
    private const int Margin = 16, TitleHeight = 40, StripGap = 12, StripWidth = 28, LabelHeight = 22;

    /// <summary>Where the picture and the newline strip are drawn; internal so tests can sample pixels at known places.</summary>
    internal readonly record struct Layout(int Width, int Height, SKRectI Picture, SKRectI Strip);

    internal static Layout ComputeLayout(int pictureHeight, int pictureWidth)
    {
        double s = PictureSide / (double)Math.Max(pictureHeight, pictureWidth);
        int w = Math.Max(1, (int)Math.Round(pictureWidth * s)), h = Math.Max(1, (int)Math.Round(pictureHeight * s));
        var picture = new SKRectI(Margin, Margin + TitleHeight, Margin + w, Margin + TitleHeight + h);
        var strip = new SKRectI(picture.Right + StripGap, picture.Top, picture.Right + StripGap + StripWidth, picture.Bottom);
        return new Layout(strip.Right + Margin, picture.Bottom + LabelHeight + Margin, picture, strip);
    }

    /// <summary>
    /// Writes the figure to <paramref name="path"/>: the picture at <paramref name="imagePath"/> (the image as the user gave it), the
    /// <paramref name="rows"/> x <paramref name="cols"/> <paramref name="grid"/> (row-major, row 0 at the top) over it, and the
    /// <paramref name="rows"/> <paramref name="newlines"/> beside it. Returns the path.
    /// </summary>
    public static string Write(string path, string imagePath, float[] grid, int rows, int cols, float[] newlines, string title)
    {
        using var picture = SKBitmap.Decode(imagePath) ?? throw new InvalidDataException($"image '{imagePath}' could not be decoded for the high-resolution figure");
        if (rows <= 0 || cols <= 0 || grid.Length != rows * cols)
            throw new ArgumentException($"a {rows} x {cols} grid needs {rows * cols} values, got {grid.Length}", nameof(grid));
        if (newlines.Length != rows) throw new ArgumentException($"{rows} grid rows need {rows} newline values, got {newlines.Length}", nameof(newlines));
        var L = ComputeLayout(picture.Height, picture.Width);
        var scaled = HeatmapOverlay.Normalize(grid.Concat(newlines).ToArray());
        using var figure = new SKBitmap(new SKImageInfo(L.Width, L.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(figure))
        {
            canvas.Clear(SKColors.White);
            Drawing.DrawCentered(canvas, title, L.Width / 2f, Margin + 26, 18, L.Width - 2 * Margin, SKColors.Black);
            using (var image = SKImage.FromBitmap(picture))
                canvas.DrawImage(image, SKRect.Create(L.Picture.Left, L.Picture.Top, L.Picture.Width, L.Picture.Height), new SKSamplingOptions(SKCubicResampler.Mitchell));
            using var paint = new SKPaint { IsAntialias = false };
            SKColor Heat(float v) { var c = Colormaps.Jet(v); return new SKColor(c.R, c.G, c.B, (byte)Math.Round(Alpha * 255)); }
            float cw = L.Picture.Width / (float)cols, ch = L.Picture.Height / (float)rows;
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < cols; c++)
                {
                    paint.Color = Heat(scaled[r * cols + c]);
                    canvas.DrawRect(L.Picture.Left + c * cw, L.Picture.Top + r * ch, cw, ch, paint);
                }
                var nl = Heat(scaled[rows * cols + r]);
                paint.Color = nl.WithAlpha(255);
                canvas.DrawRect(L.Strip.Left, L.Strip.Top + r * ch, L.Strip.Width, ch, paint);
            }
            Drawing.DrawCentered(canvas, $"{rows} x {cols} grid (padding removed)", L.Picture.MidX, L.Picture.Bottom + 17, 13, L.Picture.Width, SKColors.Black);
            Drawing.DrawCentered(canvas, "newlines", L.Strip.MidX, L.Strip.Bottom + 17, 11, L.Strip.Width + 2 * StripGap, SKColors.Black);
        }
        return Drawing.SavePng(figure, path);
    }
}
