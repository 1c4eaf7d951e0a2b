using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using DuckDB.NET.Data;
using LlavaMech.Storage;
using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Cli.Tests;

/// <summary>A 50 MB prompt line through the real `run`: the run finishes in bounded memory and the rejects row is short.</summary>
public class InputLimitTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-limits-").FullName;

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    /// <summary>Runs the CLI, sampling the child's peak resident memory (VmHWM) until it exits.</summary>
    private static (CliRunner.Result Result, long PeakKib) RunMeasured(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Fixtures.RepoRoot };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "llavamech.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        long peak = 0;
        var clock = Stopwatch.StartNew();
        while (!p.HasExited && clock.Elapsed < TimeSpan.FromMinutes(5))
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{p.Id}/status"))
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                        peak = Math.Max(peak, long.Parse(line[6..].Trim().Split(' ')[0]));
            }
            catch (IOException) { }
            Thread.Sleep(20);
        }
        if (!p.HasExited) { p.Kill(true); throw new TimeoutException("llavamech " + string.Join(' ', args)); }
        p.WaitForExit();
        return (new CliRunner.Result(p.ExitCode, stdout.Result, stderr.Result), peak);
    }

    private (string Manifest, byte[] HugeLine) WriteManifest()
    {
        var tqa = File.ReadLines(Path.Combine(Fixtures.RepoRoot, "datasets/shapes-colors-mini/manifest.jsonl"))
            .Where(l => l.Contains("\"task\":\"tqa\"")).Take(4).ToList();
        // A 50 MB prompt: valid JSON, a tqa example, far past any context window.
        var huge = Encoding.UTF8.GetBytes("{\"id\":\"huge\",\"task\":\"tqa\",\"prompt\":\"USER: " +
            string.Concat(Enumerable.Repeat("What is the color of the banana? ", 1_560_000)) + "\\nASSISTANT:\"}");
        Assert.True(huge.Length > 50_000_000);
        string path = Path.Combine(_tmp, "manifest.jsonl");
        using var f = File.Create(path);
        foreach (var l in tqa.Take(2)) f.Write(Encoding.UTF8.GetBytes(l + "\n"));
        f.Write(huge);
        f.WriteByte((byte)'\n');
        foreach (var l in tqa.Skip(2)) f.Write(Encoding.UTF8.GetBytes(l + "\n"));
        return (path, huge);
    }

    private static List<object?[]> Rejects(string outDir)
    {
        using var db = new DuckDBConnection("DataSource=:memory:");
        db.Open();
        return DuckDbSql.Rows(db, $"SELECT line, reason, raw, raw_bytes, raw_sha256 FROM read_parquet('{outDir}/rejects/*.parquet') ORDER BY line");
    }

    [Fact]
    public void A_file_that_is_not_a_manifest_stores_nothing_and_a_job_without_a_usable_line_fails_with_its_rejects()
    {
        // Not a manifest (its lines would otherwise land in rejects.raw): refused before anything is written.
        string passwd = Path.Combine(_tmp, "passwd");
        File.WriteAllText(passwd, "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\n");
        string out1 = Path.Combine(_tmp, "not-a-manifest");
        var r1 = CliRunner.Run("run", "--model", "datasets/shapes-colors-mini/toy-llava", "--dataset", passwd, "--out", out1, "--torch-threads", "1");
        output.WriteLine($"exit {r1.ExitCode}\n{r1.Stdout}\n{r1.Stderr}");
        Assert.Equal(1, r1.ExitCode);
        Assert.Contains("is not a JSON Lines manifest", r1.Stdout + r1.Stderr);
        Assert.DoesNotContain("root:x", r1.Stdout + r1.Stderr);
        Assert.False(Directory.Exists(Path.Combine(out1, "rejects")), "nothing of the file is stored");

        // A manifest whose every line is rejected: the job fails (exit 1) and still writes its rejects.
        string bad = Path.Combine(_tmp, "bad.jsonl");
        File.WriteAllText(bad, "{\"id\":\"a\",\"task\":\"tqa\"}\n{\"id\":\"b\",\"task\":\"vqa\",\"prompt\":\"<image>\"}\n");
        string out2 = Path.Combine(_tmp, "all-rejected");
        var r2 = CliRunner.Run("run", "--model", "datasets/shapes-colors-mini/toy-llava", "--dataset", bad, "--out", out2, "--torch-threads", "1");
        output.WriteLine($"exit {r2.ExitCode}\n{r2.Stdout}\n{r2.Stderr}");
        Assert.Equal(1, r2.ExitCode);
        Assert.Contains("no usable line: all 2 lines of the manifest were rejected", r2.Stdout);
        Assert.Equal([1, 2], Rejects(out2).Select(r => (int)r[0]!));
    }

    [Fact]
    public void A_50_MB_prompt_line_is_rejected_and_the_run_finishes_in_bounded_memory()
    {
        var (manifest, huge) = WriteManifest();
        string sha = Convert.ToHexStringLower(SHA256.HashData(huge));
        string[] common = ["run", "--model", "datasets/shapes-colors-mini/toy-llava", "--dataset", manifest, "--shard-size", "2", "--top-neurons", "0", "--torch-threads", "1"];

        // Default line limit (1 MiB): the reader rejects the line without holding it.
        string out1 = Path.Combine(_tmp, "out1");
        var (r1, peak1) = RunMeasured([.. common, "--out", out1]);
        output.WriteLine($"default line limit: exit {r1.ExitCode}, peak RSS {peak1 / 1024} MiB\n{r1.Stdout}\n{r1.Stderr}");
        Assert.Equal(0, r1.ExitCode);
        Assert.Contains("examples      4", r1.Stdout);
        var row = Assert.Single(Rejects(out1));
        Assert.Equal(3, row[0]);
        Assert.Contains($"line is {huge.Length} bytes, longer than the limit of 1048576 bytes (--max-line-bytes)", (string)row[1]!);
        Assert.Equal(RejectRow.RawPrefixChars, ((string)row[2]!).Length);
        Assert.StartsWith("{\"id\":\"huge\",\"task\":\"tqa\"", (string)row[2]!);
        Assert.Equal((long)huge.Length, row[3]);
        Assert.Equal(sha, row[4]);

        // A line limit above the line: the reader takes it, and the worker refuses the prompt from its length before tokenizing.
        string out2 = Path.Combine(_tmp, "out2");
        var (r2, peak2) = RunMeasured([.. common, "--out", out2, "--max-line-bytes", (64 << 20).ToString()]);
        output.WriteLine($"64 MiB line limit: exit {r2.ExitCode}, peak RSS {peak2 / 1024} MiB\n{r2.Stdout}\n{r2.Stderr}");
        Assert.Equal(0, r2.ExitCode);
        row = Assert.Single(Rejects(out2));
        Assert.Contains("characters long", (string)row[1]!);
        Assert.Contains("(not tokenized)", (string)row[1]!);
        Assert.Equal(RejectRow.RawPrefixChars, ((string)row[2]!).Length);
        Assert.Equal((long)huge.Length, row[3]);
        Assert.Equal(sha, row[4]);

        // Before: tokenizing the 50 MB prompt took the process to 7 GB resident.
        Assert.True(peak1 < 1_500_000, $"peak RSS {peak1} KiB with the default line limit");
        Assert.True(peak2 < 2_500_000, $"peak RSS {peak2} KiB with the line held");
    }

    [Fact]
    public void Dev_zero_as_the_dataset_fails_within_seconds_naming_file_and_line()
    {
        var clock = Stopwatch.StartNew();
        var r = CliRunner.Run("run", "--model", "datasets/shapes-colors-mini/toy-llava", "--dataset", "/dev/zero", "--out", Path.Combine(_tmp, "zero"));
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s, exit {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("'/dev/zero' line 1: NUL byte at column 1", r.Stdout + r.Stderr);
        Assert.DoesNotContain("   at ", r.Stdout + r.Stderr);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"{clock.Elapsed}");
    }
}
