using System.Globalization;
using System.Text;

namespace LlavaMech.Reports;

/// <summary>Terminal-sized views of a patch grid: where on the image the evidence is.</summary>
public static class AsciiGrid
{
    /// <summary>Darkest to brightest; index = round(normalised value * 9).</summary>
    public const string Shades = " .:-=+*#%@";

    /// <summary>
    /// One line per grid row (row 0 first = top of the image), each cell as two identical shade characters
    /// because terminal cells are about twice as tall as wide. Values are min-max normalised first
    /// (non-finite = lowest). Lines end with '\n'.
    /// </summary>
    public static string Render(float[] grid, int side)
    {
        HeatmapOverlay.CheckGrid(grid, side);
        var t = HeatmapOverlay.Normalize(grid);
        var sb = new StringBuilder(side * (2 * side + 1));
        for (int r = 0; r < side; r++)
        {
            for (int c = 0; c < side; c++)
            {
                char ch = Shades[(int)MathF.Round(t[r * side + c] * (Shades.Length - 1))];
                sb.Append(ch).Append(ch);
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>
    /// A one-line summary, e.g. "peak at row 3, col 4 (upper left); 62% of the mass in the top 10% of patches".
    /// Rows and columns are 0-based (as patch indices elsewhere). The region names the third of the image the
    /// peak falls in. "Mass" is the sum of the positive values (negative scores, e.g. patches whose removal
    /// helps, carry no evidence), and the top 10% is ceil(0.1 * side^2) patches. Ties go to the first cell.
    /// </summary>
    public static string Describe(float[] grid, int side)
    {
        HeatmapOverlay.CheckGrid(grid, side);
        int peak = -1;
        for (int i = 0; i < grid.Length; i++)
            if (float.IsFinite(grid[i]) && (peak < 0 || grid[i] > grid[peak])) peak = i;
        if (peak < 0) return "no finite values";
        int row = peak / side, col = peak % side;

        var positive = grid.Select(v => float.IsFinite(v) && v > 0 ? (double)v : 0.0).ToArray();
        double total = positive.Sum();
        int top = (int)Math.Ceiling(0.1 * grid.Length);
        string mass = total > 0
            ? string.Format(CultureInfo.InvariantCulture, "{0:0}% of the mass in the top 10% of patches",
                100 * positive.OrderByDescending(v => v).Take(top).Sum() / total)
            : "no positive mass";
        return string.Format(CultureInfo.InvariantCulture, "peak at row {0}, col {1} ({2}); {3}", row, col, Region(row, col, side), mass);
    }

    /// <summary>Which third of the image (vertically and horizontally) a cell lies in, e.g. "upper left" or "centre".</summary>
    internal static string Region(int row, int col, int side)
    {
        string v = (3 * row / side) switch { 0 => "upper", 1 => "middle", _ => "lower" };
        string h = (3 * col / side) switch { 0 => "left", 1 => "centre", _ => "right" };
        return (v, h) switch
        {
            ("middle", "centre") => "centre",
            _ => $"{v} {h}",
        };
    }
}
