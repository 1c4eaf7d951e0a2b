using ScottPlot;

namespace LlavaMech.Reports;

/// <summary>Per-layer grouped bars: how much the attention and FFN outputs of each layer raise the answer's log-probability.</summary>
public static class LayerBars
{
    internal const int Width = 1200, Height = 520;
    internal const double BarWidth = 0.4;

    /// <summary>x position of a layer's attention (-) and FFN (+) bar centres.</summary>
    internal const double Offset = BarWidth / 2;

    /// <summary>Writes the chart as PNG (1200 x 520) and returns <paramref name="path"/>.</summary>
    public static string Write(string path, double[] attnIncrease, double[] ffnIncrease, string title)
        => Charts.Save(Build(attnIncrease, ffnIncrease, title), path, Width, Height);

    internal static Plot Build(double[] attn, double[] ffn, string title)
    {
        ArgumentNullException.ThrowIfNull(attn);
        ArgumentNullException.ThrowIfNull(ffn);
        if (attn.Length != ffn.Length)
            throw new ArgumentException($"attention has {attn.Length} layers but FFN has {ffn.Length}", nameof(ffn));
        Charts.CheckFinite(attn, nameof(attn));
        Charts.CheckFinite(ffn, nameof(ffn));

        var plot = Charts.NewPlot();
        var a = plot.Add.Bars(MakeBars(attn, -Offset, Charts.AttentionColor));
        a.LegendText = "attention";
        var f = plot.Add.Bars(MakeBars(ffn, +Offset, Charts.FfnColor));
        f.LegendText = "FFN";
        plot.Add.HorizontalLine(0, 1, Colors.Black); // the zero line separates raises from lowers

        plot.Title(title ?? "");
        plot.XLabel("layer");
        plot.YLabel("log-probability increase (nats)");
        plot.ShowLegend(Edge.Right); // outside the data area, so it never hides a bar
        // Whole-layer ticks; label every layer while that stays legible, else every 2nd/4th.
        int step = attn.Length <= 40 ? 1 : attn.Length <= 80 ? 2 : 4;
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int i = 0; i < attn.Length; i += step) ticks.AddMajor(i, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        plot.Axes.Bottom.TickGenerator = ticks;
        plot.Axes.AutoScale(); // fit y to the data now; setting x alone would otherwise skip autoscaling
        plot.Axes.SetLimitsX(-0.7, Math.Max(attn.Length, 1) - 0.3);
        return plot;
    }

    private static Bar[] MakeBars(double[] values, double offset, Color color) =>
        values.Select((v, i) => new Bar
        {
            Position = i + offset,
            Value = v,
            ValueBase = 0,
            Size = BarWidth,
            FillColor = color,
            LineWidth = 0,
        }).ToArray();
}
