namespace LlavaMech.Reports.Tests;

public class SignedNumberTests
{
    [Theory]
    [InlineData(-0.00001, 4, "+0.0000")]   // "+0.0000" alone printed "-+0.0000"
    [InlineData(-0.0, 4, "+0.0000")]       // "+0.0000;-0.0000" printed "-+0.0000" for negative zero
    [InlineData(0.0, 4, "+0.0000")]
    [InlineData(-0.00005, 4, "-0.0001")]
    [InlineData(1.28754, 4, "+1.2875")]
    [InlineData(-2.5, 1, "-2.5")]
    [InlineData(-0.000004, 5, "+0.00000")]
    [InlineData(double.NaN, 4, "NaN")]
    public void Signed_numbers_have_one_sign(double value, int decimals, string expected) =>
        Assert.Equal(expected, SignedNumber.Format(value, decimals));

    [Fact]
    public void Percentages_have_one_sign() =>
        Assert.Equal(["+12.3%", "+0.0%", "-4.0%"], new[] { 0.1234, -0.0001, -0.04 }.Select(f => SignedNumber.Percent(f)));
}
