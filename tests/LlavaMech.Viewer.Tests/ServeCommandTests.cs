using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LlavaMech.Testing;

namespace LlavaMech.Viewer.Tests;

/// <summary><c>llavamech serve</c> as a user runs it: the built CLI as a process over the fixture's run.</summary>
[Collection(ViewerCollection.Name)]
public sealed class ServeCommandTests(ViewerFixture fx)
{
    internal static async Task<(Process Process, Uri Address, string Stderr)> StartAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Fixtures.RepoRoot };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "llavamech.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var err = new System.Text.StringBuilder();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            var line = await p.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            if (line is null) break;
            err.AppendLine(line);
            if (Regex.Match(line, @" at (http://\S+/)") is { Success: true } m) return (p, new Uri(m.Groups[1].Value), err.ToString());
        }
        p.Kill(true);
        throw new InvalidOperationException("serve did not say where it listens: " + err);
    }

    [Fact]
    public async Task Serve_binds_loopback_by_default_and_answers()
    {
        var (p, address, stderr) = await StartAsync("serve", "--run", fx.RunDir, "--port", "0");
        try
        {
            Assert.Equal("127.0.0.1", address.Host);
            Assert.NotEqual(8080, address.Port);
            Assert.DoesNotContain("WARNING", stderr);
            using var http = new HttpClient { BaseAddress = address };
            var s = JsonNode.Parse(await http.GetStringAsync("/api/summary"))!;
            Assert.Equal(13, (long)s["examples"]!);
        }
        finally { p.Kill(true); p.WaitForExit(); p.Dispose(); }
    }

    [Fact]
    public async Task Serve_on_another_address_warns()
    {
        var (p, _, stderr) = await StartAsync("serve", "--run", fx.RunDir, "--port", "0", "--host", "0.0.0.0");
        try { Assert.Contains("WARNING: --host 0.0.0.0 is not a loopback address", stderr); }
        finally { p.Kill(true); p.WaitForExit(); p.Dispose(); }
    }

    [Fact]
    public void Serve_of_a_folder_without_a_run_fails_with_a_message()
    {
        string empty = Path.Combine(Path.GetTempPath(), "llavamech-viewer-empty-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(empty);
        try
        {
            var r = ViewerFixture.Cli("serve", "--run", empty, "--port", "0");
            Assert.Equal(1, r.ExitCode);
            Assert.Contains("holds no committed shard", r.Stderr);
        }
        finally { Directory.Delete(empty, true); }
    }
}
