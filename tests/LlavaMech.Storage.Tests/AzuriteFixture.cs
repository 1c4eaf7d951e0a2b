using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Azure.Storage.Blobs;
using LlavaMech.Testing;

namespace LlavaMech.Storage.Tests;

/// <summary>
/// Azurite's blob service on a free loopback port, in memory, for the duration of the test collection. The binary
/// comes from LLAVAMECH_AZURITE_BLOB, deploy/azurite/node_modules (installed by deploy/azurite/install.sh, which this
/// fixture runs when nothing is installed) or azurite-blob on PATH. With LLAVAMECH_TEST_BLOB_CONNECTION set, the tests
/// use that storage account instead and start nothing.
/// </summary>
public sealed class AzuriteFixture : IAsyncLifetime
{
    public const string AccountName = "devstoreaccount1";

    /// <summary>Azurite's well-known development key (public, documented; never a real secret).</summary>
    public const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private Process? _process;
    private string? _workDir;
    private readonly StringBuilder _log = new();

    public string ConnectionString { get; private set; } = "";

    public int Port { get; private set; }

    public async Task InitializeAsync()
    {
        string? external = Environment.GetEnvironmentVariable("LLAVAMECH_TEST_BLOB_CONNECTION");
        if (!string.IsNullOrWhiteSpace(external))
        {
            ConnectionString = external;
            return;
        }

        string exe = await FindOrInstallAsync();
        Port = FreePort();
        _workDir = Path.Combine(Path.GetTempPath(), "llavamech-azurite-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_workDir);
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _workDir,
        };
        foreach (var a in new[] { "--blobHost", "127.0.0.1", "--blobPort", Port.ToString(), "--inMemoryPersistence",
                     "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent" })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi) ?? throw new InvalidOperationException("could not start " + exe);
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"azurite exited with code {_process.ExitCode}: {Log}");
            try
            {
                using var c = new TcpClient();
                await c.ConnectAsync(IPAddress.Loopback, Port);
                break;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
        ConnectionString = $"DefaultEndpointsProtocol=http;AccountName={AccountName};AccountKey={AccountKey};BlobEndpoint=http://127.0.0.1:{Port}/{AccountName};";
    }

    public string Log { get { lock (_log) return _log.ToString(); } }

    /// <summary>A fresh, empty container (created) for one test.</summary>
    public BlobContainerClient NewContainer(BlobStoreOptions? options = null)
    {
        var c = new BlobContainerClient(ConnectionString, "t" + Guid.NewGuid().ToString("N")[..20], (options ?? Fast).ToClientOptions());
        c.CreateIfNotExists();
        return c;
    }

    /// <summary>Short backoff so that tests which provoke retries stay quick.</summary>
    public static BlobStoreOptions Fast { get; } = new() { MaxRetries = 2, RetryDelay = TimeSpan.FromMilliseconds(100), MaxRetryDelay = TimeSpan.FromSeconds(1) };

    public Task DisposeAsync()
    {
        if (_process is { HasExited: false } p)
        {
            // Azurite stops cleanly on SIGINT (not promptly on SIGTERM).
            if (!OperatingSystem.IsWindows()) kill(p.Id, 2);
            if (!p.WaitForExit(5000))
                p.Kill(entireProcessTree: true);
            p.WaitForExit(5000);
        }
        _process?.Dispose();
        if (_workDir is not null)
            try { Directory.Delete(_workDir, recursive: true); } catch (IOException) { }
        return Task.CompletedTask;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private static async Task<string> FindOrInstallAsync()
    {
        string? env = Environment.GetEnvironmentVariable("LLAVAMECH_AZURITE_BLOB");
        if (!string.IsNullOrWhiteSpace(env))
            return File.Exists(env) ? env : throw new InvalidOperationException($"LLAVAMECH_AZURITE_BLOB={env} does not exist");
        string dir = Path.Combine(Fixtures.RepoRoot, "deploy", "azurite");
        string local = Path.Combine(dir, "node_modules", ".bin", "azurite-blob");
        if (File.Exists(local)) return local;
        foreach (var p in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
        {
            string candidate = Path.Combine(p, "azurite-blob");
            if (p.Length > 0 && File.Exists(candidate)) return candidate;
        }
        // Nothing installed: install it (npm, about a minute).
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

[CollectionDefinition(Name)]
public sealed class AzuriteCollection : ICollectionFixture<AzuriteFixture>
{
    public const string Name = "azurite";
}
