namespace LlavaMech.Reports;

/// <summary>The colour scales used by the figures.</summary>
public static class Colormaps
{
    /// <summary>
    /// Matplotlib-style "jet" (dark blue, blue, cyan, yellow, red, dark red) for t in [0, 1]:
    /// the map attention-overlay figures (and the paper) conventionally use. Out-of-range t is clamped.
    /// </summary>
    public static (byte R, byte G, byte B) Jet(double t)
    {
        if (double.IsNaN(t)) t = 0;
        t = Math.Clamp(t, 0, 1);
        static byte Ch(double v) => (byte)Math.Round(255 * Math.Clamp(v, 0, 1));
        return (Ch(1.5 - Math.Abs(4 * t - 3)), Ch(1.5 - Math.Abs(4 * t - 2)), Ch(1.5 - Math.Abs(4 * t - 1)));
    }

    /// <summary>Matplotlib RdBu reversed (dark blue for the lowest values, near-white centre, dark red for the highest).</summary>
    internal static readonly string[] BlueWhiteRed =
    [
        "#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
        "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f",
    ];

    /// <summary>A diverging ScottPlot colormap; centre it at 0 with a symmetric range.</summary>
    internal static ScottPlot.IColormap Diverging() =>
        new ScottPlot.Colormaps.CustomInterpolated(BlueWhiteRed.Select(ScottPlot.Color.FromHex).ToArray());

    /// <summary>Matplotlib Blues: near-white for 0 to dark blue for the highest values (<see cref="MatrixFigure"/>).</summary>
    internal static readonly string[] WhiteBlue = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"];

}
