using SkiaSharp;

namespace LlavaMech.Reports;

/// <summary>Small SkiaSharp helpers shared by the hand-drawn figures.</summary>
internal static class Drawing
{
    // Resolved once: font lookup walks the font directory. On a machine without fonts Skia hands
    // back an empty typeface, which measures and draws nothing rather than throwing, so figures
    // still render (just without text).
    private static readonly Lazy<SKTypeface> Sans = new(ResolveTypeface);

    public static SKTypeface Typeface => Sans.Value;

    private static SKTypeface ResolveTypeface()
    {
        try
        {
            foreach (var family in new[] { "DejaVu Sans", "Liberation Sans", "Arial", "Helvetica" })
            {
                var tf = SKFontManager.Default.MatchFamily(family);
                if (tf != null) return tf;
            }
        }
        catch (Exception)
        {
            // A broken font manager must not cost us the figure.
        }
        return SKTypeface.Default;
    }

    /// <summary>A font of the given size, shrunk until <paramref name="text"/> fits in <paramref name="maxWidth"/>.</summary>
    public static SKFont FittingFont(string text, float size, float maxWidth)
    {
        var font = new SKFont(Typeface, size) { Subpixel = true, Edging = SKFontEdging.Antialias };
        while (font.Size > 6 && font.MeasureText(text) > maxWidth)
            font.Size -= 1;
        return font;
    }

    public static void DrawCentered(SKCanvas canvas, string text, float centerX, float baselineY, float size, float maxWidth, SKColor color)
    {
        if (string.IsNullOrEmpty(text)) return;
        using var font = FittingFont(text, size, maxWidth);
        using var paint = new SKPaint { Color = color, IsAntialias = true };
        canvas.DrawText(text, centerX, baselineY, SKTextAlign.Center, font, paint);
    }

    public static void DrawLeft(SKCanvas canvas, string text, float x, float baselineY, float size, SKColor color)
    {
        using var font = new SKFont(Typeface, size) { Subpixel = true, Edging = SKFontEdging.Antialias };
        using var paint = new SKPaint { Color = color, IsAntialias = true };
        canvas.DrawText(text, x, baselineY, SKTextAlign.Left, font, paint);
    }

    public static void DrawRight(SKCanvas canvas, string text, float x, float baselineY, float size, SKColor color)
    {
        using var font = new SKFont(Typeface, size) { Subpixel = true, Edging = SKFontEdging.Antialias };
        using var paint = new SKPaint { Color = color, IsAntialias = true };
        canvas.DrawText(text, x, baselineY, SKTextAlign.Right, font, paint);
    }

    /// <summary>Encodes <paramref name="bitmap"/> as PNG at <paramref name="path"/>, creating the folder.</summary>
    public static string SavePng(SKBitmap bitmap, string path)
    {
        EnsureDirectory(path);
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new InvalidOperationException("PNG encoding failed for " + path);
        using var stream = File.Create(path);
        data.SaveTo(stream);
        return path;
    }

    public static void EnsureDirectory(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
    }

    /// <summary>Wraps an [H, W, 3] uint8 buffer as an opaque bitmap.</summary>
    public static SKBitmap FromRgb(byte[] rgb, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        if (height <= 0 || width <= 0) throw new ArgumentOutOfRangeException(nameof(height), $"image size must be positive, got {height}x{width}");
        if (rgb.Length != checked(height * width * 3))
            throw new ArgumentException($"rgb has {rgb.Length} bytes, expected {height}*{width}*3 = {height * width * 3}", nameof(rgb));
        var bmp = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var px = new byte[width * height * 4];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            px[j] = rgb[i];
            px[j + 1] = rgb[i + 1];
            px[j + 2] = rgb[i + 2];
            px[j + 3] = 255;
        }
        System.Runtime.InteropServices.Marshal.Copy(px, 0, bmp.GetPixels(), px.Length);
        return bmp;
    }

    /// <summary>Scales an image by <paramref name="scale"/> with a Mitchell cubic filter (smooth, no ringing halos).</summary>
    public static SKBitmap Upscale(SKBitmap src, int scale)
    {
        var dst = new SKBitmap(new SKImageInfo(src.Width * scale, src.Height * scale, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(dst);
        using var image = SKImage.FromBitmap(src);
        canvas.DrawImage(image, new SKRect(0, 0, dst.Width, dst.Height), new SKSamplingOptions(SKCubicResampler.Mitchell));
        return dst;
    }
}
