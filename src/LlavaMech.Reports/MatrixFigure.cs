using ScottPlot;

namespace LlavaMech.Reports;

/// <summary>
/// A labelled matrix of shares (0 to 1), e.g. a confusion matrix: every cell the same size and centred on its row's and
/// column's tick label, the first row at the top, the value printed in each non-empty cell, a white-to-blue scale (0 is white) with
/// a colour bar naming its unit. NaN cells (a row without examples) are grey.
/// </summary>
public static class MatrixFigure
{
    /// <summary>Pixels of each cell's side.</summary>
    internal const int Cell = 64;

    /// <summary>Room around the matrix: labels left and below, the colour bar right, the title on top.</summary>
    private static readonly PixelPadding Padding = new(left: 120, right: 170, bottom: 110, top: 60);

    /// <summary>The figure's size for a matrix: square cells of <see cref="Cell"/> pixels plus <see cref="Padding"/>.</summary>
    internal static (int Width, int Height) Size(int rows, int cols) =>
        ((int)(Padding.Left + Padding.Right) + cols * Cell, (int)(Padding.Top + Padding.Bottom) + rows * Cell);

    public static string Write(string path, double[,] values, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels,
        string title, string rowAxis, string columnAxis, string unit)
    {
        var (w, h) = Size(values.GetLength(0), values.GetLength(1));
        return Charts.Save(Build(values, rowLabels, columnLabels, title, rowAxis, columnAxis, unit), path, w, h);
    }

    internal static Plot Build(double[,] values, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels,
        string title, string rowAxis, string columnAxis, string unit)
    {
        int rows = values.GetLength(0), cols = values.GetLength(1);
        if (rows == 0 || cols == 0) throw new ArgumentException("values must be non-empty", nameof(values));
        if (rowLabels.Count != rows || columnLabels.Count != cols)
            throw new ArgumentException($"{rows} x {cols} values need as many labels (got {rowLabels.Count} rows, {columnLabels.Count} columns)");
        foreach (var v in values)
            if (double.IsInfinity(v) || v < 0 || v > 1) throw new ArgumentException($"values must be shares in [0, 1] or NaN, got {v}", nameof(values));

        var plot = Charts.NewPlot();
        var hm = plot.Add.Heatmap(values);   // Intensities[0, *] is drawn as the top row
        hm.Colormap = Colormaps.Sequential();
        hm.ManualRange = new ScottPlot.Range(0, 1);
        hm.NaNCellColor = ScottPlot.Colors.Gray;
        // Cell (r, c) is centred on (x = c, y = rows - 1 - r), one unit wide and high.
        hm.Extent = new CoordinateRect(-0.5, cols - 0.5, -0.5, rows - 0.5);
        plot.Add.ColorBar(hm).Label = unit;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                if (values[r, c] is var v && !double.IsNaN(v) && v > 0)
                {
                    var text = plot.Add.Text(v.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture), c, rows - 1 - r);
                    text.LabelAlignment = Alignment.MiddleCenter;
                    text.LabelFontSize = 11;
                    text.LabelFontColor = v > 0.55 ? ScottPlot.Colors.White : ScottPlot.Colors.Black;
                }
        var xTicks = new ScottPlot.TickGenerators.NumericManual();
        for (int c = 0; c < cols; c++) xTicks.AddMajor(c, columnLabels[c]);
        var yTicks = new ScottPlot.TickGenerators.NumericManual();
        for (int r = 0; r < rows; r++) yTicks.AddMajor(rows - 1 - r, rowLabels[r]);
        plot.Axes.Bottom.TickGenerator = xTicks;
        plot.Axes.Left.TickGenerator = yTicks;
        plot.Axes.SetLimits(-0.5, cols - 0.5, -0.5, rows - 0.5);
        plot.Grid.IsVisible = false;
        plot.Layout.Fixed(Padding);   // the data area is exactly the cells, so they are square
        plot.Title(title);
        plot.XLabel(columnAxis);
        plot.YLabel(rowAxis);
        return plot;
    }
}
