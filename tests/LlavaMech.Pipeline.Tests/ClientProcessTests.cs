using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// <c>submit</c>, <c>status</c> and <c>cancel</c> are cluster clients: as real processes (the built CLI), with and
/// without a cluster, they never map libtorch (nor TorchSharp) into memory, as /proc/PID/maps shows while they run.
/// </summary>
public class ClientProcessTests(ITestOutputHelper output)
{
    /// <summary>Runs the CLI to its end, reading its /proc/PID/maps every few milliseconds: the exit code, output, and every torch file it mapped.</summary>
    private static async Task<(int Code, string Output, string[] TorchFiles)> RunMappedAsync(string name, params string[] args)
    {
        await using var p = ChildProcess.Start(name, args);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        string maps = $"/proc/{p.Pid}/maps";
        while (!p.HasExited)
        {
            try
            {
                foreach (var line in File.ReadLines(maps))
                    if (line.Contains("torch", StringComparison.OrdinalIgnoreCase) && line.IndexOf('/') is >= 0 and var at)
                        seen.Add(line[at..]);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }   // it exited meanwhile
            await Task.Delay(5);
        }
        int code = await p.WaitAsync(TimeSpan.FromMinutes(2));
        return (code, p.Output, seen.Order().ToArray());
    }

    private static bool Libtorch(string[] files) => files.Any(f => Path.GetFileName(f).StartsWith("libtorch", StringComparison.Ordinal));

    [Fact]
    public async Task Submit_status_and_cancel_never_load_libtorch_with_or_without_a_cluster()
    {
        // The probe sees libtorch where it is loaded: a forward pass maps it.
        var forward = await RunMappedAsync("forward", "forward", "--model", TestData.TinyModel, "--prompt", "USER: hi ASSISTANT:");
        Assert.True(forward.Code == 0, forward.Output);
        Assert.True(Libtorch(forward.TorchFiles), "the probe saw no libtorch in a forward pass: " + string.Join(", ", forward.TorchFiles));

        // No cluster: help, and a client that cannot connect.
        var help = await RunMappedAsync("submit --help", "submit", "--help");
        Assert.Equal(0, help.Code);
        Assert.Empty(help.TorchFiles);
        int nothing = PipelineHost.FreePort();
        var lonely = await RunMappedAsync("status", "status", "--gateway-port", $"{nothing}", "--cluster-id", "none");
        Assert.Equal(1, lonely.Code);
        Assert.Contains("cannot connect to cluster 'none'", lonely.Output);
        Assert.Empty(lonely.TorchFiles);

        // A cluster (one silo that hosts grains only): submit a job, ask its status, cancel it.
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 2, copies: 1);
        string clusterId = "client" + Guid.NewGuid().ToString("N")[..10];
        int port = PipelineHost.FreePort(), gateway = PipelineHost.FreePort();
        string[] cluster = ["--gateway-port", $"{gateway}", "--cluster-id", clusterId];
        await using var silo = ChildProcess.Start("silo",
            ["silo", "--silo-port", $"{port}", "--devices", "none", "--parent-pid", $"{Environment.ProcessId}", "--verbose", .. cluster]);
        await silo.WaitForOutputAsync("declares no devices", TimeSpan.FromMinutes(2));
        var submit = await RunMappedAsync("submit", ["submit", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", tmp.Sub("out"),
            "--run-id", "client-maps", "--shard-size", "2", .. cluster]);
        var status = await RunMappedAsync("status", ["status", "--job", "client-maps", .. cluster]);
        var cancel = await RunMappedAsync("cancel", ["cancel", "--job", "client-maps", .. cluster]);
        foreach (var (what, r) in new[] { ("submit", submit), ("status", status), ("cancel", cancel) })
        {
            output.WriteLine($"--- {what}: exit {r.Code}, torch files: [{string.Join(", ", r.TorchFiles)}]\n{r.Output}");
            Assert.True(r.Code == 0, r.Output);
            Assert.Empty(r.TorchFiles);
        }
        Assert.Contains("client-maps: running", submit.Output);   // prepared (the model validated) on the silo, not here
        Assert.Contains("client-maps: running", status.Output);
        Assert.Contains("client-maps: cancelled", cancel.Output);
    }
}
