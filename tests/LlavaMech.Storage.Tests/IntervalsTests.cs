namespace LlavaMech.Storage.Tests;

/// <summary>The 95% intervals of the run summaries against reference values (t quantiles by Simpson integration of the t density and bisection; Wilson's formula).</summary>
public class IntervalsTests
{
    [Theory]
    [InlineData(1, 12.706204736174698)]
    [InlineData(2, 4.302652729749464)]
    [InlineData(3, 3.182446305284263)]
    [InlineData(10, 2.2281388519862744)]
    [InlineData(63, 1.9983405417721956)]
    [InlineData(255, 1.9693105698498359)]
    [InlineData(100000, 1.9599877077027297)]
    public void Student_t_quantile_matches_scipy(long df, double expected) =>
        Assert.Equal(expected, Intervals.StudentT975(df), 1e-7);

    [Fact]
    public void Mean_and_Wilson_intervals()
    {
        var (lo, hi) = Intervals.Mean(1.0, 2.0, 4);
        Assert.Equal(1.0 - 3.182446305284263, lo!.Value, 1e-8);
        Assert.Equal(1.0 + 3.182446305284263, hi!.Value, 1e-8);
        Assert.Equal((null, null), Intervals.Mean(1.0, null, 1));
        // Wilson, 12 of 64: (0.11065, 0.29974); 0 of 10: (0, 0.27753).
        var (wl, wh) = Intervals.Wilson(12, 64);
        Assert.Equal(0.1106464317, wl, 8);
        Assert.Equal(0.2997436056, wh, 8);
        var (zl, zh) = Intervals.Wilson(0, 10);
        Assert.Equal(0.0, zl, 12);
        Assert.Equal(0.27753, zh, 4);
    }
}
