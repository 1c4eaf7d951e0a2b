using ScottPlot;

namespace LlavaMech.Reports;

/// <summary>Named curves over a fraction axis 0..1, e.g. the mean deletion / insertion curves of explanation methods.</summary>
public static class CurvePlot
{
    internal const int Width = 900, Height = 560;

    /// <summary>
    /// Writes the line chart as PNG (900 x 560) and returns <paramref name="path"/>. Each series' points are
    /// spread evenly over x in [0, 1] (point i of n at i / (n - 1)), so series of different lengths share the
    /// axis. Series keep the dictionary's order and take the Category10 palette in turn.
    /// </summary>
    public static string Write(string path, IReadOnlyDictionary<string, double[]> curves, string xLabel, string yLabel, string title)
        => Charts.Save(Build(curves, xLabel, yLabel, title), path, Width, Height);

    internal static readonly IPalette Palette = new ScottPlot.Palettes.Category10();

    internal static Plot Build(IReadOnlyDictionary<string, double[]> curves, string xLabel, string yLabel, string title)
    {
        ArgumentNullException.ThrowIfNull(curves);
        var plot = Charts.NewPlot();
        int k = 0;
        foreach (var (name, ys) in curves)
        {
            ArgumentNullException.ThrowIfNull(ys, name);
            if (ys.Length == 0) throw new ArgumentException($"curve '{name}' is empty", nameof(curves));
            var xs = Xs(ys.Length);
            var s = plot.Add.ScatterLine(xs, ys, Palette.GetColor(k++));
            s.LegendText = name;
            s.LineWidth = 2;
            s.MarkerSize = ys.Length <= 25 ? 5 : 0; // markers only where they stay distinct
        }
        plot.Title(title ?? "");
        plot.XLabel(xLabel ?? "");
        plot.YLabel(yLabel ?? "");
        plot.Axes.AutoScale(); // fit y to the data now; setting x alone would otherwise skip autoscaling
        plot.Axes.SetLimitsX(0, 1);
        if (k > 0) plot.ShowLegend(Edge.Right);
        return plot;
    }

    /// <summary>n evenly spaced positions from 0 to 1 (a single point sits at 0).</summary>
    internal static double[] Xs(int n) => Enumerable.Range(0, n).Select(i => n == 1 ? 0.0 : (double)i / (n - 1)).ToArray();
}
