using System.Globalization;
using ScottPlot;

namespace LlavaMech.Reports;

/// <summary>The figures of <c>intervene</c>: clean vs edited token probabilities, and the per-layer patching curve.</summary>
public static class InterventionFigure
{
    internal const int Width = 1000, Height = 520;
    internal const double BarWidth = 0.4;

    /// <summary>
    /// Grouped bars, one group per token: its probability in the clean pass (blue, left) and the edited pass (orange,
    /// right). Writes PNG (1000 x 520) and returns <paramref name="path"/>.
    /// </summary>
    public static string WriteTokenBars(string path, string[] tokens, double[] clean, double[] edited, string title)
        => Charts.Save(BuildTokenBars(tokens, clean, edited, title), path, Width, Height);

    /// <summary>
    /// The change of the target's log-probability when layer l's input is patched, per layer l (0, 1, ...), with the
    /// zero line. Writes PNG (1000 x 520) and returns <paramref name="path"/>.
    /// </summary>
    public static string WriteLayerCurve(string path, double[] deltas, string title)
        => Charts.Save(BuildLayerCurve(deltas, title), path, Width, Height);

    internal static Plot BuildTokenBars(string[] tokens, double[] clean, double[] edited, string title)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (clean.Length != tokens.Length || edited.Length != tokens.Length)
            throw new ArgumentException($"{tokens.Length} tokens, {clean.Length} clean and {edited.Length} edited values", nameof(edited));
        Charts.CheckFinite(clean, nameof(clean));
        Charts.CheckFinite(edited, nameof(edited));
        var plot = Charts.NewPlot();
        Bar[] Bars(double[] v, double offset, Color c) => v.Select((x, i) => new Bar
        {
            Position = i + offset, Value = x, ValueBase = 0, Size = BarWidth, FillColor = c, LineWidth = 0,
        }).ToArray();
        plot.Add.Bars(Bars(clean, -BarWidth / 2, Charts.AttentionColor)).LegendText = "clean";
        plot.Add.Bars(Bars(edited, +BarWidth / 2, Charts.FfnColor)).LegendText = "edited";
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int i = 0; i < tokens.Length; i++) ticks.AddMajor(i, $"'{tokens[i]}'");
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Title(title ?? "");
        plot.YLabel("probability at the last position");
        plot.ShowLegend(Edge.Right);
        plot.Axes.AutoScale();
        plot.Axes.SetLimitsX(-0.7, Math.Max(tokens.Length, 1) - 0.3);
        return plot;
    }

    internal static Plot BuildLayerCurve(double[] deltas, string title)
    {
        ArgumentNullException.ThrowIfNull(deltas);
        if (deltas.Length == 0) throw new ArgumentException("the curve is empty", nameof(deltas));
        Charts.CheckFinite(deltas, nameof(deltas));
        var plot = Charts.NewPlot();
        var xs = Enumerable.Range(0, deltas.Length).Select(i => (double)i).ToArray();
        var line = plot.Add.ScatterLine(xs, deltas, Charts.AttentionColor);
        line.LineWidth = 2;
        line.MarkerSize = deltas.Length <= 64 ? 6 : 0;
        plot.Add.HorizontalLine(0, 1, Colors.Black);
        int step = deltas.Length <= 40 ? 1 : deltas.Length <= 80 ? 2 : 4;
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int i = 0; i < deltas.Length; i += step) ticks.AddMajor(i, i.ToString(CultureInfo.InvariantCulture));
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Title(title ?? "");
        plot.XLabel("patched layer (input of the layer)");
        plot.YLabel("edited - clean log-probability");
        plot.Axes.AutoScale();
        plot.Axes.SetLimitsX(-0.5, Math.Max(deltas.Length - 1, 1) + 0.5);
        return plot;
    }
}
