namespace LlavaMech.Reports;

/// <summary>Agreement between two importance maps: correlations over flattened values and overlap of top sets.</summary>
public static class Correlation
{
    /// <summary>Pearson correlation; NaN when fewer than two values or either side is constant.</summary>
    public static double Pearson(double[] x, double[] y)
    {
        if (x.Length != y.Length) throw new ArgumentException($"lengths differ: {x.Length} vs {y.Length}");
        int n = x.Length;
        if (n < 2) return double.NaN;
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++)
        {
            sxy += (x[i] - mx) * (y[i] - my);
            sxx += (x[i] - mx) * (x[i] - mx);
            syy += (y[i] - my) * (y[i] - my);
        }
        return sxx == 0 || syy == 0 ? double.NaN : sxy / Math.Sqrt(sxx * syy);
    }

    /// <summary>Spearman rank correlation: Pearson of the average ranks (ties get their mean rank); NaN when either side is constant.</summary>
    public static double Spearman(double[] x, double[] y)
    {
        if (x.Length != y.Length) throw new ArgumentException($"lengths differ: {x.Length} vs {y.Length}");
        return Pearson(AverageRanks(x), AverageRanks(y));
    }

    /// <summary>1-based ranks, smallest first; tied values share the mean of their ranks.</summary>
    public static double[] AverageRanks(double[] v)
    {
        var order = Enumerable.Range(0, v.Length).OrderBy(i => v[i]).ToArray();
        var ranks = new double[v.Length];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && v[order[j + 1]] == v[order[i]]) j++;
            double r = (i + j) / 2.0 + 1;
            for (int k = i; k <= j; k++) ranks[order[k]] = r;
            i = j + 1;
        }
        return ranks;
    }

    /// <summary>|A ∩ B| / |A ∪ B|; 1 when both sets are empty.</summary>
    public static double Jaccard<T>(IReadOnlySet<T> a, IReadOnlySet<T> b) =>
        a.Count + b.Count == 0 ? 1 : (double)a.Count(b.Contains) / a.Union(b).Count();
}
