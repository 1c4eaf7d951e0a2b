using System.Collections.Concurrent;
using System.Globalization;

namespace LlavaMech.Cli.Tests;

/// <summary>
/// Every numeric option of every command is checked against its declared range before the command runs: a value out of
/// range, too large for any integer, or not a number ends the real CLI with exit code 2 and a message naming the option,
/// never a stack trace (forward --top 0 used to abort in native code with exit 134).
/// </summary>
public class OptionRangeTests
{
    private static IEnumerable<string> BadValues(CommandLine.NumericRange r)
    {
        string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        yield return "abc";
        yield return "99999999999999999999999";
        if (r.Min > -1e15) yield return F(r.Min - 1);
        if (r.Max < 1e15) yield return F(r.Max + 1);
        if (r.Min > 0) yield return "0";
        if (r.Min > -3) yield return "-3";
        if (r.Integer) yield return "1.5";
    }

    [Fact]
    public void Every_numeric_option_refuses_out_of_range_and_non_numbers_with_exit_2_and_no_stack_trace()
    {
        var cases = (from c in Cli.Commands
                     from s in CommandLine.NumericOptions(c.Specs)
                     from v in BadValues(s.Range!).Distinct()
                     select (Command: c.Name, Option: s.Name, Value: v)).ToList();
        Assert.True(cases.Select(c => c.Command).Distinct().Count() >= 15, "numeric options found in too few commands");
        Assert.Contains(cases, c => c is { Command: "forward", Option: "top", Value: "0" });
        Assert.Contains(cases, c => c is { Command: "forward", Option: "top", Value: "-3" });

        var failures = new ConcurrentBag<string>();
        Parallel.ForEach(cases, new ParallelOptions { MaxDegreeOfParallelism = 3 }, c =>
        {
            var r = CliRunner.Run([.. c.Command.Split(' '), $"--{c.Option}", c.Value]);
            if (r.ExitCode != 2 || !r.Stderr.Contains($"--{c.Option}") || r.Stderr.Contains("   at ") || r.Stdout.Contains("   at "))
                failures.Add($"{c.Command} --{c.Option} {c.Value}: exit {r.ExitCode}: {r.Stderr.Trim()}");
        });
        Assert.True(failures.IsEmpty, $"{failures.Count} of {cases.Count} cases:\n" + string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void Forward_top_zero_and_negative_name_the_option_and_its_range()
    {
        foreach (var v in new[] { "0", "-3" })
        {
            var r = CliRunner.Run("forward", "--model", "tests/fixtures/tiny-llava-mha", "--prompt", "x", "--top", v);
            Assert.Equal(2, r.ExitCode);
            Assert.Equal($"llavamech forward: --top must be an integer from 1 to 1048576, got {v}. See ./llavamech forward --help", r.Stderr.Trim());
        }
    }

    [Fact]
    public void Dataset_validate_of_dev_zero_fails_at_once_naming_the_line()
    {
        var r = CliRunner.Run("dataset", "validate", "/dev/zero");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("'/dev/zero' line 1: NUL byte at column 1", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }
}
