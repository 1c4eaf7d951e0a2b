using ScottPlot;

namespace LlavaMech.Reports;

/// <summary>Shared ScottPlot set-up.</summary>
internal static class Charts
{
    public static readonly Color AttentionColor = Color.FromHex("#1f77b4");
    public static readonly Color FfnColor = Color.FromHex("#ff7f0e");

    /// <summary>
    /// A new plot in an installed sans font. ScottPlot's own "Sans" resolves to DejaVu Serif on Linux boxes
    /// that only have DejaVu, so the family is picked here; with no fonts at all the name stays ScottPlot's
    /// default, Skia hands back an empty typeface and text is blank rather than an exception.
    /// </summary>
    public static Plot NewPlot()
    {
        var plot = new Plot();
        plot.Font.Set(SansFamily.Value);
        return plot;
    }

    private static readonly Lazy<string> SansFamily = new(() =>
    {
        try
        {
            var installed = SkiaSharp.SKFontManager.Default.FontFamilies.ToHashSet(StringComparer.OrdinalIgnoreCase);
            foreach (var family in new[] { "DejaVu Sans", "Liberation Sans", "Arial", "Helvetica", "Noto Sans" })
                if (installed.Contains(family)) return family;
        }
        catch (Exception)
        {
            // Fall through to ScottPlot's choice.
        }
        return Fonts.Default;
    });

    /// <summary>Renders <paramref name="plot"/> to <paramref name="path"/> as PNG and returns the path.</summary>
    public static string Save(Plot plot, string path, int width, int height)
    {
        Drawing.EnsureDirectory(path);
        plot.SavePng(path, width, height);
        return path;
    }

    public static void CheckFinite(IEnumerable<double> values, string name)
    {
        foreach (var v in values)
            if (!double.IsFinite(v)) throw new ArgumentException($"{name} contains a non-finite value ({v})", name);
    }
}
