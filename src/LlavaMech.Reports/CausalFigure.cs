using System.Globalization;
using ScottPlot;

namespace LlavaMech.Reports;

/// <summary>
/// The figures of a run's interventions: mean change of log p(target) per head selection and task with error bars
/// (<c>causal_effects</c>), and the knockout curve over the layer windows (<c>knockout_effects</c>).
/// </summary>
public static class CausalFigure
{
    internal const int Width = 1000, Height = 560;

    /// <summary>
    /// Grouped bars: one group per task, one bar per selection, height <paramref name="mean"/>[task, selection] with
    /// error bars ± <paramref name="halfWidth"/>[task, selection]. A NaN mean (a selection a task lacks) draws no bar.
    /// Writes PNG (1000 x 560), returns <paramref name="path"/>.
    /// </summary>
    public static string WriteSelections(string path, string[] tasks, string[] selections, double[,] mean, double[,] halfWidth, string title,
        string xLabel = "task", string yLabel = "change of log p(target)")
    {
        if (mean.GetLength(0) != tasks.Length || mean.GetLength(1) != selections.Length || halfWidth.GetLength(0) != tasks.Length || halfWidth.GetLength(1) != selections.Length)
            throw new ArgumentException($"mean and halfWidth must be [{tasks.Length}, {selections.Length}]", nameof(mean));
        var plot = Charts.NewPlot();
        double width = 0.8 / Math.Max(1, selections.Length);
        for (int i = 0; i < selections.Length; i++)
        {
            var bars = new List<Bar>();
            for (int t = 0; t < tasks.Length; t++)
            {
                if (double.IsNaN(mean[t, i])) continue;
                Charts.CheckFinite([mean[t, i], halfWidth[t, i]], selections[i]);
                bars.Add(new Bar
                {
                    Position = t - 0.4 + width * (i + 0.5),
                    Value = mean[t, i],
                    ValueBase = 0,
                    Error = halfWidth[t, i],
                    ErrorSize = width * 0.4f,
                    Size = width * 0.9,
                    FillColor = CurvePlot.Palette.GetColor(i),
                    LineWidth = 1.5f,                  // the outline and the error bar
                    LineColor = Colors.Black,
                });
            }
            if (bars.Count == 0) continue;
            var b = plot.Add.Bars(bars.ToArray());
            b.LegendText = selections[i];
        }
        plot.Add.HorizontalLine(0, 1, Colors.Black);
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int t = 0; t < tasks.Length; t++) ticks.AddMajor(t, tasks[t]);
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Title(title ?? "");
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(Edge.Right);
        plot.Axes.AutoScale();
        plot.Axes.SetLimitsX(-0.6, tasks.Length - 0.4);
        return Charts.Save(plot, path, Width, Height);
    }

    /// <summary>Lines over x (here: a window's first layer), one per named curve (xs, ys), with markers and a zero line. Writes PNG (1000 x 560).</summary>
    public static string WriteCurves(string path, IReadOnlyDictionary<string, (double[] Xs, double[] Ys)> curves, string xLabel, string yLabel, string title)
    {
        var plot = Charts.NewPlot();
        int k = 0;
        foreach (var (name, (xs, ys)) in curves)
        {
            if (xs.Length != ys.Length || xs.Length == 0) throw new ArgumentException($"curve '{name}' has {xs.Length} x and {ys.Length} y values", nameof(curves));
            Charts.CheckFinite(ys, name);
            var s = plot.Add.ScatterLine(xs, ys, CurvePlot.Palette.GetColor(k++));
            s.LegendText = name;
            s.LineWidth = 2;
            s.MarkerSize = 6;
        }
        plot.Add.HorizontalLine(0, 1, Colors.Black);
        int maxX = curves.Count == 0 ? 0 : (int)curves.Values.Max(c => c.Xs.Max());
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        int step = maxX <= 40 ? 1 : maxX <= 80 ? 2 : 4;
        for (int i = 0; i <= maxX; i += step) ticks.AddMajor(i, i.ToString(CultureInfo.InvariantCulture));
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Title(title ?? "");
        plot.XLabel(xLabel ?? "");
        plot.YLabel(yLabel ?? "");
        if (k > 0) plot.ShowLegend(Edge.Right);
        plot.Axes.AutoScale();
        plot.Axes.SetLimitsX(-0.5, maxX + 0.5);
        return Charts.Save(plot, path, Width, Height);
    }
}
