using ScottPlot;

namespace LlavaMech.Reports;

/// <summary>A layers x heads map of per-head scores with a diverging colour scale centred at 0.</summary>
public static class HeadHeatmap
{
    internal const int Width = 1000, Height = 860;

    /// <summary>
    /// Writes <paramref name="values"/> ([layers, heads]) as PNG (1000 x 860) and returns <paramref name="path"/>.
    /// Layer 0 is at the bottom, head 0 on the left; blue = negative, white = 0, red = positive, with the
    /// colour range symmetric (+-max|value|) so equal magnitudes get equal saturation. NaN cells are grey.
    /// </summary>
    public static string Write(string path, double[,] values, string title, string colorbarLabel = "log-probability increase")
        => Charts.Save(Build(values, title, colorbarLabel), path, Width, Height);

    internal static Plot Build(double[,] values, string title, string colorbarLabel)
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

        // ScottPlot draws Intensities[0, *] as the top row; flip so layer 0 is at the bottom like the y axis.
        var rows = new double[layers, heads];
        for (int l = 0; l < layers; l++)
            for (int h = 0; h < heads; h++)
                rows[layers - 1 - l, h] = values[l, h];

        var plot = Charts.NewPlot();
        var hm = plot.Add.Heatmap(rows);
        hm.Colormap = Colormaps.Diverging();
        hm.ManualRange = new ScottPlot.Range(-maxAbs, maxAbs);
        hm.NaNCellColor = Colors.Gray;
        // Cell (layer l, head h) is centred on (x = h, y = l), so integer ticks label cells.
        hm.Extent = new CoordinateRect(-0.5, heads - 0.5, -0.5, layers - 0.5);
        var bar = plot.Add.ColorBar(hm);
        bar.Label = colorbarLabel ?? "";

        plot.Title(title ?? "");
        plot.XLabel("head");
        plot.YLabel("layer");
        plot.Axes.Bottom.TickGenerator = IntegerTicks(heads);
        plot.Axes.Left.TickGenerator = IntegerTicks(layers);
        plot.Axes.SetLimits(-0.5, heads - 0.5, -0.5, layers - 0.5);
        plot.Grid.IsVisible = false; // grid lines would cut through cells
        return plot;
    }

    private static ScottPlot.TickGenerators.NumericManual IntegerTicks(int count)
    {
        int step = count <= 16 ? 1 : count <= 40 ? 2 : count <= 80 ? 4 : 8;
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int i = 0; i < count; i += step) ticks.AddMajor(i, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return ticks;
    }
}
