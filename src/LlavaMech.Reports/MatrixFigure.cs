using System.Globalization;
using SkiaSharp;

namespace LlavaMech.Reports;

/// <summary>
/// A labelled matrix of shares (0 to 1), e.g. a confusion matrix, drawn cell by cell: every cell the same whole number of
/// pixels, the first row on top, each row and column label centred on its cell, the value printed in each non-empty
/// cell, a white-to-blue scale (0 is white) with a colour bar naming its unit. NaN cells (a row without examples) are grey.
/// </summary>
public static class MatrixFigure
{
    /// <summary>Pixels of each cell's side.</summary>
    internal const int Cell = 56;

    internal const int Left = 150, Top = 60, Bottom = 90, BarGap = 24, BarWidth = 22, BarLabels = 110;

    /// <summary>Where everything sits (pixels); internal so tests can sample known places.</summary>
    internal readonly record struct Layout(int Rows, int Cols, int Width, int Height, SKRectI ColorBar)
    {
        public SKRectI CellRect(int row, int col) => new(Left + col * Cell, Top + row * Cell, Left + (col + 1) * Cell, Top + (row + 1) * Cell);
    }

    internal static Layout ComputeLayout(int rows, int cols)
    {
        int gridRight = Left + cols * Cell, gridBottom = Top + rows * Cell;
        var bar = new SKRectI(gridRight + BarGap, Top, gridRight + BarGap + BarWidth, gridBottom);
        return new Layout(rows, cols, bar.Right + BarLabels, Math.Max(gridBottom + Bottom, Top + 200 + Bottom), bar);
    }

    public static string Write(string path, double[,] values, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels,
        string title, string rowAxis, string columnAxis, string unit)
    {
        using var bitmap = Render(values, rowLabels, columnLabels, title, rowAxis, columnAxis, unit);
        return Drawing.SavePng(bitmap, path);
    }

    internal static SKBitmap Render(double[,] values, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels,
        string title, string rowAxis, string columnAxis, string unit)
    {
        int rows = values.GetLength(0), cols = values.GetLength(1);
        if (rows == 0 || cols == 0) throw new ArgumentException("values must be non-empty", nameof(values));
        if (rowLabels.Count != rows || columnLabels.Count != cols)
            throw new ArgumentException($"{rows} x {cols} values need as many labels (got {rowLabels.Count} rows, {columnLabels.Count} columns)");
        foreach (var v in values)
            if (double.IsInfinity(v) || v < 0 || v > 1) throw new ArgumentException($"values must be shares in [0, 1] or NaN, got {v}", nameof(values));

        var layout = ComputeLayout(rows, cols);
        var bitmap = new SKBitmap(layout.Width, layout.Height);
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);
        Drawing.DrawCentered(canvas, title, layout.Width / 2f, 30, 16, layout.Width - 20, SKColors.Black);
        using var fill = new SKPaint { IsAntialias = false };
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                double v = values[r, c];
                var rect = layout.CellRect(r, c);
                fill.Color = double.IsNaN(v) ? new SKColor(160, 160, 160) : Color(v);
                canvas.DrawRect(rect, fill);
                if (!double.IsNaN(v) && v > 0)
                    Drawing.DrawCentered(canvas, v.ToString("0.00", CultureInfo.InvariantCulture), rect.MidX, rect.MidY + 4, 12, Cell - 4,
                        v > 0.55 ? SKColors.White : SKColors.Black);
            }
        using var frame = new SKPaint { Color = SKColors.Black, Style = SKPaintStyle.Stroke, StrokeWidth = 1, IsAntialias = false };
        canvas.DrawRect(Left - 1, Top - 1, cols * Cell + 1, rows * Cell + 1, frame);
        for (int r = 0; r < rows; r++)
            Drawing.DrawRight(canvas, rowLabels[r], Left - 8, layout.CellRect(r, 0).MidY + 5, 13, SKColors.Black);
        for (int c = 0; c < cols; c++)
            Drawing.DrawCentered(canvas, columnLabels[c], layout.CellRect(0, c).MidX, Top + rows * Cell + 20, 13, Cell - 2, SKColors.Black);
        Drawing.DrawCentered(canvas, columnAxis, Left + cols * Cell / 2f, Top + rows * Cell + 48, 14, cols * Cell, SKColors.Black);
        canvas.Save();
        canvas.RotateDegrees(-90, 24, Top + rows * Cell / 2f);
        Drawing.DrawCentered(canvas, rowAxis, 24, Top + rows * Cell / 2f + 5, 14, Math.Max(rows * Cell, 120), SKColors.Black);
        canvas.Restore();
        DrawColorBar(canvas, layout.ColorBar, unit);
        return bitmap;
    }

    private static readonly SKColor[] Stops = Colormaps.WhiteBlue.Select(SKColor.Parse).ToArray();

    /// <summary>The colour of a share: <see cref="Colormaps.WhiteBlue"/> interpolated.</summary>
    internal static SKColor Color(double share)
    {
        var stops = Stops;
        double x = Math.Clamp(share, 0, 1) * (stops.Length - 1);
        int i = Math.Min((int)x, stops.Length - 2);
        double t = x - i;
        byte Mix(byte a, byte b) => (byte)Math.Round(a + t * (b - a));
        return new SKColor(Mix(stops[i].Red, stops[i + 1].Red), Mix(stops[i].Green, stops[i + 1].Green), Mix(stops[i].Blue, stops[i + 1].Blue));
    }

    /// <summary>The scale from 0 (bottom) to 1 (top), labelled at 0, 0.5 and 1, with the unit along its side.</summary>
    private static void DrawColorBar(SKCanvas canvas, SKRectI bar, string unit)
    {
        using (var p = new SKPaint { IsAntialias = false })
            for (int y = bar.Top; y < bar.Bottom; y++)
            {
                p.Color = Color(1 - (y - bar.Top + 0.5) / bar.Height);
                canvas.DrawRect(bar.Left, y, bar.Width, 1, p);
            }
        using var frame = new SKPaint { Color = SKColors.Black, Style = SKPaintStyle.Stroke, StrokeWidth = 1, IsAntialias = false };
        canvas.DrawRect(bar.Left - 1, bar.Top - 1, bar.Width + 1, bar.Height + 1, frame);
        foreach (var (v, y) in new[] { (1.0, (float)bar.Top), (0.5, bar.MidY), (0.0, (float)bar.Bottom) })
        {
            canvas.DrawLine(bar.Right, y, bar.Right + 5, y, frame);
            Drawing.DrawLeft(canvas, v.ToString("0.0", CultureInfo.InvariantCulture), bar.Right + 8, y + 5, 12, SKColors.Black);
        }
        canvas.Save();
        float lx = bar.Right + 50, ly = bar.MidY;
        canvas.RotateDegrees(90, lx, ly);
        Drawing.DrawCentered(canvas, unit, lx, ly + 5, 13, Math.Max(bar.Height, 200), SKColors.Black);
        canvas.Restore();
    }
}
