using DuckDB.NET.Data;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Storage;

/// <summary>
/// One (task, selection, k) group of <c>causal_effects</c>: n examples, mean delta with its 95% t interval
/// (mean ± t(0.975, n-1) · sd / sqrt(n); null for n = 1), and the flip rate with its 95% Wilson score interval.
/// </summary>
public sealed record CausalSummaryRow(string Task, string Selection, int K, long N, double MeanDelta, double? DeltaLo, double? DeltaHi,
    double FlipRate, double FlipLo, double FlipHi);

/// <summary>
/// The log-increase heads against another selection on the same examples (paired): n examples with both rows, the mean of
/// delta(log_increase) − delta(<paramref name="Versus"/>) with its 95% t interval (negative: ablating the log-increase
/// heads lowers log p(target) more), and the share of examples where it lowers it more.
/// </summary>
public sealed record CausalPairedRow(string Task, string Versus, int K, long N, double MeanDiff, double? DiffLo, double? DiffHi, double ShareLogIncreaseCostsMore);

/// <summary>One point of the knockout curve: a (task, window, start layer) group of <c>knockout_effects</c>, as <see cref="CausalSummaryRow"/>.</summary>
public sealed record KnockoutCurveRow(string Task, int Window, int StartLayer, int EndLayer, long N, double MeanDelta, double? DeltaLo, double? DeltaHi,
    double FlipRate, double FlipLo, double FlipHi);

/// <summary>Per task and image part of <c>image_part_shares</c> (LLaVA-NeXT): examples, the mean attention share over examples and
/// heads, the mean log-increase share over examples and top heads (null when none has one).</summary>
public sealed record ImagePartSummaryRow(string Task, string Part, long Examples, double MeanAttnShare, double? MeanLogIncreaseShare);

public static partial class Aggregates
{
    /// <summary>Does the answer come from the thumbnail or the tiles? <see cref="ImagePartSummaryRow"/> per task and part, ordered
    /// by task then base, grid, newline (empty when the run has no LLaVA-NeXT image).</summary>
    public static async Task<IReadOnlyList<ImagePartSummaryRow>> ImagePartSummaryAsync(IObjectStore store, CancellationToken ct = default)
    {
        var rows = await QueryAsync(store, TableNames.ImagePartShares, from => $"""
            SELECT task, part, count(DISTINCT example_id)::BIGINT, avg(attn_share)::DOUBLE, avg(log_increase_share)::DOUBLE
            FROM {from} GROUP BY task, part
            """, ct).ConfigureAwait(false);
        string[] order = ["base", "grid", "newline"];
        return rows.Select(r => new ImagePartSummaryRow((string)r[0]!, (string)r[1]!, Convert.ToInt64(r[2]), Convert.ToDouble(r[3]),
                r[4] is null or DBNull ? null : Convert.ToDouble(r[4])))
            .OrderBy(r => r.Task, StringComparer.Ordinal).ThenBy(r => Array.IndexOf(order, r.Part)).ToList();
    }

    /// <summary>Mean delta and flip rate per task, selection and k of <c>causal_effects</c> (empty when the run has none), ordered by task, then selection as written (log_increase, attention, random), then k.</summary>
    public static async Task<IReadOnlyList<CausalSummaryRow>> CausalSummaryAsync(IObjectStore store, CancellationToken ct = default)
    {
        var groups = await GroupsAsync(store, TableNames.CausalEffects, "task, selection, k", ct).ConfigureAwait(false);
        return groups.Select(g => Summarize(g, (m, dlo, dhi, f, flo, fhi) =>
                new CausalSummaryRow((string)g.Keys[0]!, (string)g.Keys[1]!, Convert.ToInt32(g.Keys[2]), g.N, m, dlo, dhi, f, flo, fhi)))
            .OrderBy(r => r.Task, StringComparer.Ordinal).ThenBy(r => HeadSelections.Order(r.Selection))
            .ThenBy(r => r.Selection, StringComparer.Ordinal).ThenBy(r => r.K).ToList();
    }

    /// <summary>The knockout curve: mean delta per task, window and start layer of <c>knockout_effects</c> (empty when the run has none).</summary>
    public static async Task<IReadOnlyList<KnockoutCurveRow>> KnockoutCurveAsync(IObjectStore store, CancellationToken ct = default)
    {
        var groups = await GroupsAsync(store, TableNames.KnockoutEffects, "task, window_size, start_layer, end_layer", ct).ConfigureAwait(false);
        return groups.Select(g => Summarize(g, (m, dlo, dhi, f, flo, fhi) =>
                new KnockoutCurveRow((string)g.Keys[0]!, Convert.ToInt32(g.Keys[1]), Convert.ToInt32(g.Keys[2]), Convert.ToInt32(g.Keys[3]), g.N, m, dlo, dhi, f, flo, fhi)))
            .OrderBy(r => r.Task, StringComparer.Ordinal).ThenBy(r => r.Window).ThenBy(r => r.StartLayer).ToList();
    }

    /// <summary>Paired comparisons of <c>log_increase</c> with every other selection of <c>causal_effects</c> per task and k (empty when the run has none).</summary>
    public static async Task<IReadOnlyList<CausalPairedRow>> CausalPairedAsync(IObjectStore store, CancellationToken ct = default)
    {
        var rows = await QueryAsync(store, TableNames.CausalEffects, from => $"""
            WITH t AS (SELECT * FROM {from})
            SELECT s.task, s.selection, s.k, count(*)::BIGINT, avg(b.delta - s.delta)::DOUBLE, stddev_samp(b.delta - s.delta)::DOUBLE,
                   avg(CASE WHEN b.delta < s.delta THEN 1 ELSE 0 END)::DOUBLE
            FROM t s JOIN t b ON s.run_id = b.run_id AND s.example_id = b.example_id AND s.k = b.k AND b.selection = '{HeadSelections.LogIncrease}'
            WHERE s.selection <> '{HeadSelections.LogIncrease}'
            GROUP BY s.task, s.selection, s.k
            """, ct).ConfigureAwait(false);
        return rows.Select(r =>
            {
                long n = Convert.ToInt64(r[3]);
                double mean = Convert.ToDouble(r[4]);
                var (lo, hi) = Intervals.Mean(mean, r[5] is null or DBNull ? null : Convert.ToDouble(r[5]), n);
                return new CausalPairedRow((string)r[0]!, (string)r[1]!, Convert.ToInt32(r[2]), n, mean, lo, hi, Convert.ToDouble(r[6]));
            })
            .OrderBy(r => r.Task, StringComparer.Ordinal).ThenBy(r => HeadSelections.Order(r.Versus)).ThenBy(r => r.Versus, StringComparer.Ordinal).ThenBy(r => r.K).ToList();
    }

    private sealed record Group(object?[] Keys, long N, double Mean, double? Sd, long Flips);

    private static T Summarize<T>(Group g, Func<double, double?, double?, double, double, double, T> make)
    {
        var (lo, hi) = Intervals.Mean(g.Mean, g.Sd, g.N);
        var (flo, fhi) = Intervals.Wilson(g.Flips, g.N);
        return make(g.Mean, lo, hi, (double)g.Flips / g.N, flo, fhi);
    }

    /// <summary>count, mean and sample sd of delta and the flips per group of the committed parts of <paramref name="table"/>.</summary>
    private static async Task<List<Group>> GroupsAsync(IObjectStore store, string table, string keys, CancellationToken ct)
    {
        int nKeys = keys.Split(',').Length;
        var rows = await QueryAsync(store, table, from => $"""
            SELECT {keys}, count(*)::BIGINT, avg(delta)::DOUBLE, stddev_samp(delta)::DOUBLE, sum(flipped::INTEGER)::BIGINT
            FROM {from} GROUP BY {keys} ORDER BY {keys}
            """, ct).ConfigureAwait(false);
        return rows.Select(r => new Group(r[..nKeys], Convert.ToInt64(r[nKeys]), Convert.ToDouble(r[nKeys + 1]),
            r[nKeys + 2] is null or DBNull ? null : Convert.ToDouble(r[nKeys + 2]), Convert.ToInt64(r[nKeys + 3]))).ToList();
    }

    /// <summary>Runs <paramref name="sql"/>(the committed parts of <paramref name="table"/> as a <c>read_parquet</c> source); no rows when it has no part.</summary>
    private static async Task<List<object?[]>> QueryAsync(IObjectStore store, string table, Func<string, string> sql, CancellationToken ct)
    {
        var committer = new ShardCommitter(store);
        var manifests = await committer.CommittedManifestsAsync(ct).ConfigureAwait(false);
        var parts = manifests.SelectMany(m => m.Parts.Where(p => p.Table == table && p.Rows > 0)).Select(p => p.Path).ToList();
        if (parts.Count == 0) return [];
        string scratch = Path.Combine(Path.GetTempPath(), "llavamech-agg-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(scratch);
        try
        {
            var paths = await LocalFilesAsync(store, parts, scratch, table, ct).ConfigureAwait(false);
            using var db = new DuckDBConnection("DataSource=:memory:");
            await db.OpenAsync(ct).ConfigureAwait(false);
            return Rows(db, sql($"read_parquet({SqlList(paths)})"));
        }
        finally
        {
            try { Directory.Delete(scratch, recursive: true); } catch (IOException) { }
        }
    }
}

/// <summary>95% intervals of the run summaries: Student's t for a mean, Wilson's score interval for a proportion.</summary>
public static class Intervals
{
    /// <summary>mean ± t(0.975, n-1) · sd / sqrt(n); (null, null) when n &lt; 2 or sd is unknown.</summary>
    public static (double? Lo, double? Hi) Mean(double mean, double? sd, long n)
    {
        if (n < 2 || sd is not { } s || !double.IsFinite(s)) return (null, null);
        double half = StudentT975(n - 1) * s / Math.Sqrt(n);
        return (mean - half, mean + half);
    }

    /// <summary>Wilson's 95% score interval of <paramref name="k"/> successes in <paramref name="n"/> (z = 1.959964).</summary>
    public static (double Lo, double Hi) Wilson(long k, long n)
    {
        if (n <= 0) return (0, 1);
        const double z = 1.959963984540054;
        double p = (double)k / n, z2 = z * z;
        double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
        double half = z * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / (1 + z2 / n);
        return (Math.Max(0, centre - half), Math.Min(1, centre + half));
    }

    /// <summary>The 0.975 quantile of Student's t with <paramref name="df"/> degrees of freedom (bisection on the CDF, 1e-12).</summary>
    public static double StudentT975(long df)
    {
        if (df < 1) throw new ArgumentOutOfRangeException(nameof(df));
        double lo = 0, hi = 1000;
        for (int i = 0; i < 200 && hi - lo > 1e-12; i++)
        {
            double mid = 0.5 * (lo + hi);
            if (TUpperTail(mid, df) > 0.025) lo = mid; else hi = mid;
        }
        return 0.5 * (lo + hi);
    }

    /// <summary>P(T &gt; t) for t ≥ 0: I_{df/(df+t²)}(df/2, 1/2) / 2.</summary>
    private static double TUpperTail(double t, double df) => 0.5 * RegularizedBeta(df / (df + t * t), df / 2, 0.5);

    /// <summary>The regularized incomplete beta function I_x(a, b) (continued fraction, Numerical Recipes' betacf).</summary>
    private static double RegularizedBeta(double x, double a, double b)
    {
        if (x <= 0) return 0;
        if (x >= 1) return 1;
        double lnFront = LogGamma(a + b) - LogGamma(a) - LogGamma(b) + a * Math.Log(x) + b * Math.Log(1 - x);
        if (x < (a + 1) / (a + b + 2)) return Math.Exp(lnFront) * BetaFraction(x, a, b) / a;
        return 1 - Math.Exp(lnFront) * BetaFraction(1 - x, b, a) / b;
    }

    private static double BetaFraction(double x, double a, double b)
    {
        const double tiny = 1e-300;
        double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
        if (Math.Abs(d) < tiny) d = tiny;
        d = 1 / d;
        double h = d;
        for (int m = 1; m <= 300; m++)
        {
            int m2 = 2 * m;
            double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
            d = 1 + aa * d; if (Math.Abs(d) < tiny) d = tiny;
            c = 1 + aa / c; if (Math.Abs(c) < tiny) c = tiny;
            d = 1 / d; h *= d * c;
            aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
            d = 1 + aa * d; if (Math.Abs(d) < tiny) d = tiny;
            c = 1 + aa / c; if (Math.Abs(c) < tiny) c = tiny;
            d = 1 / d;
            double del = d * c;
            h *= del;
            if (Math.Abs(del - 1) < 1e-15) break;
        }
        return h;
    }

    /// <summary>ln Γ(x), Lanczos (g = 7, n = 9), x &gt; 0.</summary>
    private static double LogGamma(double x)
    {
        double[] c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
        if (x < 0.5) return Math.Log(Math.PI / Math.Sin(Math.PI * x)) - LogGamma(1 - x);
        x -= 1;
        double a = c[0], t = x + 7.5;
        for (int i = 1; i < 9; i++) a += c[i] / (x + i);
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(a);
    }
}
