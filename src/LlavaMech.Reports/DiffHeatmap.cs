namespace LlavaMech.Reports;

/// <summary>The element-wise difference A - B of two [layers, heads] maps, drawn like <see cref="HeadHeatmap"/>.</summary>
public static class DiffHeatmap
{
    /// <summary>
    /// Writes the heatmap of <paramref name="a"/> - <paramref name="b"/> and returns <paramref name="path"/>.
    /// The title is <paramref name="title"/> when given, else "{nameA} − {nameB}"; red cells are where A is higher.
    /// </summary>
    public static string Write(string path, double[,] a, double[,] b, string nameA, string nameB,
        string? title = null, string colorbarLabel = "difference of log-probability increase (nats)")
        => HeadHeatmap.Write(path, Subtract(a, b), title ?? $"{nameA} \u2212 {nameB}", colorbarLabel);

    /// <summary>a - b, element-wise; the shapes must match.</summary>
    public static double[,] Subtract(double[,] a, double[,] b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        int l = a.GetLength(0), h = a.GetLength(1);
        if (b.GetLength(0) != l || b.GetLength(1) != h)
            throw new ArgumentException($"shapes differ: [{l}, {h}] vs [{b.GetLength(0)}, {b.GetLength(1)}]", nameof(b));
        var d = new double[l, h];
        for (int i = 0; i < l; i++)
            for (int j = 0; j < h; j++)
                d[i, j] = a[i, j] - b[i, j];
        return d;
    }
}
