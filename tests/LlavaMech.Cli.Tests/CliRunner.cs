using System.Diagnostics;

namespace LlavaMech.Cli.Tests;

/// <summary>Runs the built CLI as a separate process, as a user would, and captures its output.</summary>
public static class CliRunner
{
    /// <param name="Elapsed">wall-clock time of the process.</param>
    /// <param name="PeakRssBytes">the process's peak resident memory (Linux VmHWM, read every few ms until it exits; 0 elsewhere).</param>
    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed = default, long PeakRssBytes = 0);

    public static Result Run(params string[] args) => Run(TimeSpan.FromMinutes(5), args);

    public static Result Run(TimeSpan timeout, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "llavamech.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.WorkingDirectory = LlavaMech.Testing.Fixtures.RepoRoot;
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        long peak = 0;
        string status = $"/proc/{p.Id}/status";
        while (!p.WaitForExit(5))
        {
            peak = Math.Max(peak, PeakRss(status));
            if (sw.Elapsed > timeout) { p.Kill(true); throw new TimeoutException($"llavamech {string.Join(' ', args)} ran past {timeout}"); }
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result, sw.Elapsed, peak);
    }

    /// <summary>VmHWM of /proc/PID/status in bytes; 0 when it cannot be read (the process ended, or not Linux).</summary>
    private static long PeakRss(string statusPath)
    {
        try
        {
            foreach (var line in File.ReadLines(statusPath))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0]) * 1024;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return 0;
    }
}
