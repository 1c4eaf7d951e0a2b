using System.Globalization;
using System.Text;

namespace LlavaMech.Reports;

/// <summary>GitHub-flavoured Markdown tables for reports.</summary>
public static class MarkdownTable
{
    /// <summary>
    /// Renders a padded GitHub-flavoured table. A column whose non-empty cells all parse as numbers
    /// (invariant culture, optionally ending in '%') is right-aligned ("---:") so digits line up; other
    /// columns are left-aligned. Short rows are padded with empty cells; '|' in cells is escaped and
    /// newlines become spaces, since either would break the row.
    /// </summary>
    public static string Render(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        ArgumentNullException.ThrowIfNull(headers);
        ArgumentNullException.ThrowIfNull(rows);
        if (headers.Count == 0) throw new ArgumentException("a table needs at least one column", nameof(headers));
        int n = headers.Count;
        var head = headers.Select(Escape).ToArray();
        var body = new List<string[]>();
        foreach (var row in rows)
        {
            ArgumentNullException.ThrowIfNull(row);
            if (row.Count > n) throw new ArgumentException($"a row has {row.Count} cells but there are {n} headers", nameof(rows));
            body.Add(Enumerable.Range(0, n).Select(i => i < row.Count ? Escape(row[i]) : "").ToArray());
        }

        var width = new int[n];
        var numeric = new bool[n];
        for (int c = 0; c < n; c++)
        {
            width[c] = Math.Max(3, head[c].Length); // "---" is the shortest valid delimiter
            bool anyValue = false, allNumbers = true;
            foreach (var r in body)
            {
                width[c] = Math.Max(width[c], r[c].Length);
                if (r[c].Length == 0) continue;
                anyValue = true;
                allNumbers &= IsNumber(r[c]);
            }
            numeric[c] = anyValue && allNumbers;
        }

        var sb = new StringBuilder();
        AppendRow(sb, head, width, numeric);
        sb.Append('|');
        for (int c = 0; c < n; c++)
            sb.Append(' ').Append(numeric[c] ? new string('-', width[c] - 1) + ":" : new string('-', width[c])).Append(" |");
        sb.Append('\n');
        foreach (var r in body) AppendRow(sb, r, width, numeric);
        return sb.ToString();
    }

    private static void AppendRow(StringBuilder sb, string[] cells, int[] width, bool[] right)
    {
        sb.Append('|');
        for (int c = 0; c < cells.Length; c++)
            sb.Append(' ').Append(right[c] ? cells[c].PadLeft(width[c]) : cells[c].PadRight(width[c])).Append(" |");
        sb.Append('\n');
    }

    private static string Escape(string? s) =>
        (s ?? "").Replace("\r\n", " ").Replace('\n', ' ').Replace('\r', ' ').Replace("|", "\\|").Trim();

    internal static bool IsNumber(string s)
    {
        s = s.Trim();
        if (s.EndsWith('%')) s = s[..^1];
        if (s.Length > 0 && s[0] == '\u2212') s = "-" + s[1..]; // typographic minus
        return double.TryParse(s, NumberStyles.Float | NumberStyles.AllowThousands, CultureInfo.InvariantCulture, out _)
            || s is "NaN" or "nan" or "inf" or "-inf" or "∞" or "-∞";
    }
}
