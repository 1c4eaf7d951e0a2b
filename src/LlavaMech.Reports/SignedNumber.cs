using System.Globalization;

namespace LlavaMech.Reports;

/// <summary>
/// Numbers with an explicit sign ("+0.0123", "-0.4560"). A value that rounds to zero, negative zero included, is
/// "+0.0000": .NET's "+0.0000" pattern alone gives "-+0.0000" for -0.00001, and "+0.0000;-0.0000" gives it for -0.0.
/// </summary>
public static class SignedNumber
{
    /// <summary><paramref name="value"/> with <paramref name="decimals"/> decimals and a sign; NaN as "NaN".</summary>
    public static string Format(double value, int decimals = 4)
    {
        if (double.IsNaN(value)) return "NaN";
        if (double.IsInfinity(value)) return value > 0 ? "+inf" : "-inf";
        double r = Math.Round(value, decimals, MidpointRounding.AwayFromZero);
        if (r == 0) r = 0.0;   // also turns -0.0 into +0.0
        string digits = decimals > 0 ? "0." + new string('0', decimals) : "0";
        return r.ToString($"+{digits};-{digits}", CultureInfo.InvariantCulture);
    }

    /// <summary>A fraction as a signed percentage: 0.123 -> "+12.3%".</summary>
    public static string Percent(double fraction, int decimals = 1) => double.IsNaN(fraction) ? "NaN" : Format(fraction * 100, decimals) + "%";
}
