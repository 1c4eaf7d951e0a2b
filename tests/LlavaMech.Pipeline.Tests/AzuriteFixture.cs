using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using LlavaMech.Testing;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// Azurite's blob and table services on free loopback ports, in memory, for the pipeline collection (the approach of
/// tests/LlavaMech.Storage.Tests/AzuriteFixture.cs, with the table endpoint added for Orleans' azuretable clustering).
/// The binary: LLAVAMECH_AZURITE, deploy/azurite/node_modules/.bin/azurite (installed by deploy/azurite/install.sh,
/// which this fixture runs when nothing is installed), or azurite on PATH. Stopped with SIGINT.
/// </summary>
public sealed class AzuriteFixture : IAsyncLifetime
{
    public const string AccountName = "devstoreaccount1";

    /// <summary>Azurite's well-known development key (public, documented; never a real secret).</summary>
    public const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private Process? _process;
    private string? _workDir;
    private readonly StringBuilder _log = new();

    public int BlobPort { get; private set; }
    public int TablePort { get; private set; }

    /// <summary>Blob and table endpoints with the development account.</summary>
    public string ConnectionString => Connection(BlobPort, TablePort);

    /// <summary>A connection string whose blob endpoint is <paramref name="blobPort"/> (e.g. a proxy or a closed port).</summary>
    public static string Connection(int blobPort, int? tablePort = null, string key = AccountKey) =>
        $"DefaultEndpointsProtocol=http;AccountName={AccountName};AccountKey={key};BlobEndpoint=http://127.0.0.1:{blobPort}/{AccountName};" +
        (tablePort is { } t ? $"TableEndpoint=http://127.0.0.1:{t}/{AccountName};" : "");

    public async Task InitializeAsync()
    {
        string exe = await FindOrInstallAsync();
        BlobPort = PipelineHost.FreePort();
        TablePort = PipelineHost.FreePort();
        int queuePort = PipelineHost.FreePort();
        _workDir = Path.Combine(Path.GetTempPath(), "llavamech-azurite-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_workDir);
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _workDir,
        };
        foreach (var a in new[]
                 {
                     "--blobHost", "127.0.0.1", "--blobPort", BlobPort.ToString(), "--tableHost", "127.0.0.1", "--tablePort", TablePort.ToString(),
                     "--queueHost", "127.0.0.1", "--queuePort", queuePort.ToString(),
                     "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent",
                 })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi) ?? throw new InvalidOperationException("could not start " + exe);
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        foreach (int port in new[] { BlobPort, TablePort })
            while (true)
            {
                if (_process.HasExited) throw new InvalidOperationException($"azurite exited with code {_process.ExitCode}: {Log}");
                try
                {
                    using var c = new TcpClient();
                    await c.ConnectAsync(IPAddress.Loopback, port);
                    break;
                }
                catch (SocketException) when (DateTime.UtcNow < deadline)
                {
                    await Task.Delay(100);
                }
            }
    }

    public string Log { get { lock (_log) return _log.ToString(); } }

    public Task DisposeAsync()
    {
        if (_process is { HasExited: false } p)
        {
            kill(p.Id, 2);   // Azurite stops cleanly on SIGINT
            if (!p.WaitForExit(5000)) p.Kill(entireProcessTree: true);
            p.WaitForExit(5000);
        }
        _process?.Dispose();
        if (_workDir is not null)
            try { Directory.Delete(_workDir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        return Task.CompletedTask;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    private static async Task<string> FindOrInstallAsync()
    {
        string? env = Environment.GetEnvironmentVariable("LLAVAMECH_AZURITE");
        if (!string.IsNullOrWhiteSpace(env))
            return File.Exists(env) ? env : throw new InvalidOperationException($"LLAVAMECH_AZURITE={env} does not exist");
        string dir = Path.Combine(Fixtures.RepoRoot, "deploy", "azurite");
        string local = Path.Combine(dir, "node_modules", ".bin", "azurite");
        if (File.Exists(local)) return local;
        foreach (var p in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
        {
            string candidate = Path.Combine(p, "azurite");
            if (p.Length > 0 && File.Exists(candidate)) return candidate;
        }
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(dir, "install.sh"));
        using var install = Process.Start(psi)!;
        var stdout = install.StandardOutput.ReadToEndAsync();
        var stderr = install.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await install.WaitForExitAsync(cts.Token);
        if (install.ExitCode != 0 || !File.Exists(local))
            throw new InvalidOperationException($"installing azurite failed ({install.ExitCode}): {await stdout}{await stderr}");
        return local;
    }
}

/// <summary>
/// The tests that run jobs share one in-process three-silo cluster and one Azurite (the assembly runs its tests one at a
/// time, so they never compete for them).
/// </summary>
[CollectionDefinition(Name)]
public sealed class PipelineCollection : ICollectionFixture<ClusterFixture>, ICollectionFixture<AzuriteFixture>
{
    public const string Name = "pipeline";
}
