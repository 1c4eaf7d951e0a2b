using System.Globalization;
using SkiaSharp;

namespace LlavaMech.Reports;

/// <summary>
/// A layers x heads map of per-head scores with a diverging colour scale centred at 0, drawn cell by cell: every cell
/// is the same whole number of pixels wide and high, each tick label is centred on its row or column, and the colour
/// bar names its unit.
/// </summary>
public static class HeadHeatmap
{
    internal const int Width = 1000, Height = 860;
    internal const int Left = 80, Top = 56, Bottom = 70, BarGap = 28, BarWidth = 24, BarLabels = 150;

    /// <summary>The unit of the default colour bar: increases of a natural-log probability.</summary>
    public const string DefaultLabel = "log-probability increase (nats)";

    /// <summary>Where everything sits (pixels); internal so tests can sample known places.</summary>
    internal readonly record struct Layout(int Layers, int Heads, int Cell, int GridLeft, int GridTop, SKRectI ColorBar)
    {
        public int GridWidth => Heads * Cell;
        public int GridHeight => Layers * Cell;

        /// <summary>The cell of (layer, head): layer 0 at the bottom, head 0 on the left.</summary>
        public SKRectI CellRect(int layer, int head)
        {
            int x = GridLeft + head * Cell, y = GridTop + (Layers - 1 - layer) * Cell;
            return new SKRectI(x, y, x + Cell, y + Cell);
        }

        public float HeadTickX(int head) => GridLeft + head * Cell + Cell / 2f;
        public float LayerTickY(int layer) => GridTop + (Layers - 1 - layer) * Cell + Cell / 2f;
    }

    internal static Layout ComputeLayout(int layers, int heads)
    {
        int availW = Width - Left - BarGap - BarWidth - BarLabels, availH = Height - Top - Bottom;
        int cell = Math.Max(1, Math.Min(availW / heads, availH / layers));   // whole pixels: every cell the same size
        int gridW = heads * cell, gridH = layers * cell;
        int gridLeft = Left + (availW - gridW) / 2, gridTop = Top + (availH - gridH) / 2;
        int barLeft = gridLeft + gridW + BarGap;
        return new Layout(layers, heads, cell, gridLeft, gridTop, new SKRectI(barLeft, gridTop, barLeft + BarWidth, gridTop + gridH));
    }

    /// <summary>
    /// Writes <paramref name="values"/> ([layers, heads]) as PNG (1000 x 860) and returns <paramref name="path"/>.
    /// Layer 0 is at the bottom, head 0 on the left; blue = negative, white = 0, red = positive, with the
    /// colour range symmetric (+-max|value|) so equal magnitudes get equal saturation. NaN cells are grey.
    /// </summary>
    public static string Write(string path, double[,] values, string title, string colorbarLabel = DefaultLabel)
    {
        using var bitmap = Render(values, title, colorbarLabel);
        return Drawing.SavePng(bitmap, path);
    }

    internal static SKBitmap Render(double[,] values, string title, string colorbarLabel)
    {
        ArgumentNullException.ThrowIfNull(values);
        int layers = values.GetLength(0), heads = values.GetLength(1);
        if (layers == 0 || heads == 0) throw new ArgumentException("values must be non-empty", nameof(values));
        double maxAbs = 0;
        foreach (var v in values)
        {
            if (double.IsInfinity(v)) throw new ArgumentException("values contains an infinity", nameof(values));
            if (!double.IsNaN(v)) maxAbs = Math.Max(maxAbs, Math.Abs(v));
        }
        if (maxAbs == 0) maxAbs = 1; // all zero: keep a valid range, everything renders white

        var L = ComputeLayout(layers, heads);
        var bitmap = new SKBitmap(new SKImageInfo(Width, Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);
        Drawing.DrawCentered(canvas, title ?? "", Width / 2f, 30, 17, Width - 40, SKColors.Black);

        // Cells: exact integer rectangles, no anti-aliasing (edges fall on pixel boundaries).
        using (var fill = new SKPaint { IsAntialias = false, Style = SKPaintStyle.Fill })
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < heads; h++)
                {
                    double v = values[l, h];
                    fill.Color = double.IsNaN(v) ? new SKColor(128, 128, 128) : Diverging(v / maxAbs);
                    canvas.DrawRect(L.CellRect(l, h), fill);
                }
        using (var frame = new SKPaint { Color = SKColors.Black, Style = SKPaintStyle.Stroke, StrokeWidth = 1, IsAntialias = false })
            canvas.DrawRect(L.GridLeft - 1, L.GridTop - 1, L.GridWidth + 1, L.GridHeight + 1, frame);

        // Ticks centred on their cells; label every row or column while they stay legible.
        int headStep = TickStep(heads, L.Cell), layerStep = TickStep(layers, L.Cell);
        using (var tick = new SKPaint { Color = SKColors.Black, StrokeWidth = 1, IsAntialias = false })
        {
            for (int h = 0; h < heads; h += headStep)
            {
                float x = L.HeadTickX(h);
                canvas.DrawLine(x, L.GridTop + L.GridHeight, x, L.GridTop + L.GridHeight + 5, tick);
                Drawing.DrawCentered(canvas, h.ToString(CultureInfo.InvariantCulture), x, L.GridTop + L.GridHeight + 20, 13, Math.Max(L.Cell * headStep, 12), SKColors.Black);
            }
            for (int l = 0; l < layers; l += layerStep)
            {
                float y = L.LayerTickY(l);
                canvas.DrawLine(L.GridLeft - 5, y, L.GridLeft, y, tick);
                Drawing.DrawRight(canvas, l.ToString(CultureInfo.InvariantCulture), L.GridLeft - 8, y + 5, 13, SKColors.Black);
            }
        }
        Drawing.DrawCentered(canvas, "head", L.GridLeft + L.GridWidth / 2f, L.GridTop + L.GridHeight + 42, 15, L.GridWidth + 40, SKColors.Black);
        canvas.Save();
        canvas.RotateDegrees(-90, 22, L.GridTop + L.GridHeight / 2f);
        Drawing.DrawCentered(canvas, "layer", 22, L.GridTop + L.GridHeight / 2f + 5, 15, L.GridHeight, SKColors.Black);
        canvas.Restore();

        DrawColorBar(canvas, L.ColorBar, maxAbs, colorbarLabel ?? "");
        return bitmap;
    }

    /// <summary>Blue (-1) through white (0) to red (+1) along matplotlib's RdBu (reversed).</summary>
    internal static SKColor Diverging(double t)
    {
        t = Math.Clamp(t, -1, 1);
        var stops = Colormaps.BlueWhiteRed;
        double pos = (t + 1) / 2 * (stops.Length - 1);
        int i = Math.Min(stops.Length - 2, (int)Math.Floor(pos));
        double f = pos - i;
        var a = SKColor.Parse(stops[i]);
        var b = SKColor.Parse(stops[i + 1]);
        static byte Mix(byte x, byte y, double f) => (byte)Math.Round(x + (y - x) * f);
        return new SKColor(Mix(a.Red, b.Red, f), Mix(a.Green, b.Green, f), Mix(a.Blue, b.Blue, f));
    }

    private static int TickStep(int count, int cell)
    {
        int step = 1;
        while (step * cell < 18 && step < count) step *= 2;
        return step;
    }

    /// <summary>The scale from -max (bottom) to +max (top), five labelled values and the unit along its side.</summary>
    private static void DrawColorBar(SKCanvas canvas, SKRectI bar, double maxAbs, string label)
    {
        using (var p = new SKPaint { IsAntialias = false })
            for (int y = bar.Top; y < bar.Bottom; y++)
            {
                p.Color = Diverging(1 - 2 * (y - bar.Top + 0.5) / bar.Height);
                canvas.DrawRect(bar.Left, y, bar.Width, 1, p);
            }
        using var frame = new SKPaint { Color = SKColors.Black, Style = SKPaintStyle.Stroke, StrokeWidth = 1, IsAntialias = false };
        canvas.DrawRect(bar.Left - 1, bar.Top - 1, bar.Width + 1, bar.Height + 1, frame);
        for (int i = 0; i <= 4; i++)
        {
            double v = maxAbs * (1 - i / 2.0);
            float y = bar.Top + i * bar.Height / 4f;
            canvas.DrawLine(bar.Right, y, bar.Right + 5, y, frame);
            Drawing.DrawLeft(canvas, SignedNumber.Format(v), bar.Right + 8, y + 5, 12, SKColors.Black);
        }
        canvas.Save();
        float lx = bar.Right + 80, ly = bar.MidY;
        canvas.RotateDegrees(90, lx, ly);
        Drawing.DrawCentered(canvas, label, lx, ly + 5, 14, Math.Max(bar.Height, 200), SKColors.Black);
        canvas.Restore();
    }
}
