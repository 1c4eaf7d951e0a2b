using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using LlavaMech.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// Mutual TLS between clients and the gateway, with real processes and real certificates: a silo process with the
/// certificates of deploy/tls/make-dev-certs.sh (openssl); <c>submit</c> processes with the client
/// certificate, without one, with one of another CA and with an expired one; hostile Orleans clients that skip the
/// CLI's own checks and present another CA's or an expired certificate to the gateway, which refuses them and logs why.
/// </summary>
public class ClusterTlsTests(ITestOutputHelper output)
{
    /// <summary>Runs deploy/tls/make-dev-certs.sh into <paramref name="dir"/> (ca/, silo/, client/).</summary>
    internal static string MakeCerts(string dir, params string[] extra)
    {
        var psi = new ProcessStartInfo("bash", [Path.Combine(Fixtures.RepoRoot, "deploy", "tls", "make-dev-certs.sh"), dir, .. extra])
            { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string all = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, all);
        return dir;
    }

    /// <summary>A client folder whose certificate is issued by <paramref name="caDir"/>'s CA but has expired.</summary>
    private static string ExpiredClient(string caDir, string dir)
    {
        using var ca = X509Certificate2.CreateFromPemFile(Path.Combine(caDir, "ca.crt"), Path.Combine(caDir, "ca.key"));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("O=LlavaMech, CN=expired-client", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        // Valid for the CA's first second (a certificate cannot start before its issuer), so expired by the time it is used.
        var start = new DateTimeOffset(ca.NotBefore.ToUniversalTime(), TimeSpan.Zero);
        using var cert = req.Create(ca, start, start.AddSeconds(1), RandomNumberGenerator.GetBytes(16));
        while (DateTimeOffset.UtcNow <= start.AddSeconds(2)) Thread.Sleep(200);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "tls.crt"), cert.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "tls.key"), key.ExportPkcs8PrivateKeyPem());
        File.Copy(Path.Combine(caDir, "ca.crt"), Path.Combine(dir, "ca.crt"));
        return dir;
    }

    /// <summary>An Orleans client that presents <paramref name="certificate"/> (or plaintext when null) and trusts any gateway.</summary>
    private static async Task<Exception?> HostileConnectAsync(int gateway, string clusterId, X509Certificate2? certificate)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.UseOrleansClient(c =>
        {
            c.UseLocalhostClustering(gateway, "llavamech", clusterId);
            if (certificate is not null)
                c.UseTls(certificate, o => { o.AllowAnyRemoteCertificate(); o.RemoteCertificateMode = Orleans.Connections.Security.RemoteCertificateMode.AllowCertificate; });
        });
        using var host = builder.Build();
        try
        {
            // Refused: the connection fails, or never completes (the client keeps retrying a gateway that drops it).
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await host.StartAsync(timeout.Token);
            var jobs = await new PipelineClient(host.Services.GetRequiredService<IClusterClient>()).ListAsync().WaitAsync(TimeSpan.FromSeconds(20));
            return null;   // connected and listed jobs: the gateway let it in
        }
        catch (Exception e) { return e; }
        finally { try { await host.StopAsync(TimeSpan.FromSeconds(5)); } catch (Exception) { } }
    }

    [Fact]
    public async Task Only_clients_with_a_valid_certificate_of_the_clusters_CA_can_submit()
    {
        using var tmp = new TempDir();
        string pki = MakeCerts(tmp.Sub("pki"));
        string foreign = MakeCerts(tmp.Sub("foreign"));
        string expired = ExpiredClient(Path.Combine(pki, "ca"), tmp.Sub("expired"));
        var data = TestData.Build(tmp.Sub("data"), perTask: 2, copies: 1);
        string clusterId = "tls" + Guid.NewGuid().ToString("N")[..10];
        int port = PipelineHost.FreePort(), gateway = PipelineHost.FreePort();
        string[] cluster = ["--gateway-port", $"{gateway}", "--cluster-id", clusterId];
        // Refused clients give up after 10 s instead of the default 30 (a TLS gateway asked in plaintext never answers).
        var quick = new Dictionary<string, string> { ["LLAVAMECH_Cluster__ConnectTimeoutSeconds"] = "10" };
        await using var silo = ChildProcess.Start("silo",
            ["silo", "--silo-port", $"{port}", "--devices", "none", "--tls", Path.Combine(pki, "silo"), "--parent-pid", $"{Environment.ProcessId}", "--verbose", .. cluster]);
        await silo.WaitForOutputAsync("declares no devices", TimeSpan.FromMinutes(2));
        Assert.Contains("mutual TLS with", silo.Output);

        // The cluster's own client submits and reads the status.
        var submit = await ChildProcess.RunAsync("submit", ["submit", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", tmp.Sub("out"),
            "--run-id", "tls-job", "--shard-size", "2", "--tls", Path.Combine(pki, "client"), .. cluster], null, TimeSpan.FromMinutes(2));
        output.WriteLine(submit.Output);
        Assert.True(submit.Code == 0, submit.Output);
        Assert.StartsWith("tls-job", submit.Stdout.Trim());

        // Without a certificate: plaintext to a TLS gateway; the error says to give the certificate folder.
        string[] job = ["submit", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", tmp.Sub("out2"), "--run-id", "intruder"];
        var plain = await ChildProcess.RunAsync("submit-plain", [.. job, .. cluster], quick, TimeSpan.FromMinutes(2));
        output.WriteLine(plain.Output);
        Assert.Equal(1, plain.Code);
        Assert.Contains("cannot connect to cluster", plain.Output);
        Assert.Contains("--tls DIR", plain.Output);
        Assert.Contains("within 10 s", plain.Output);
        Assert.DoesNotContain("intruder: running", plain.Output);

        // Another CA's client: it refuses the gateway's certificate (not of its CA) and says so.
        var other = await ChildProcess.RunAsync("submit-foreign", [.. job, "--tls", Path.Combine(foreign, "client"), .. cluster], quick, TimeSpan.FromMinutes(2));
        output.WriteLine(other.Output);
        Assert.Equal(1, other.Code);
        Assert.Contains("is not issued by the cluster's CA", other.Output);
        Assert.DoesNotContain("intruder: running", other.Output);

        // An expired certificate: the CLI refuses to use it, naming the file and the date.
        var old = await ChildProcess.RunAsync("submit-expired", [.. job, "--tls", expired, .. cluster], quick, TimeSpan.FromMinutes(2));
        output.WriteLine(old.Output);
        Assert.Equal(1, old.Code);
        Assert.Contains(Path.Combine(expired, "tls.crt"), old.Output);
        Assert.Contains("expired on", old.Output);

        // Hostile clients that skip those checks: the gateway itself refuses them and logs why.
        using var foreignCert = X509Certificate2.CreateFromPemFile(Path.Combine(foreign, "client", "tls.crt"), Path.Combine(foreign, "client", "tls.key"));
        using var expiredCert = X509Certificate2.CreateFromPemFile(Path.Combine(expired, "tls.crt"), Path.Combine(expired, "tls.key"));
        foreach (var (what, cert, logged) in new (string, X509Certificate2?, string?)[]
                 {
                     ("plaintext", null, null),
                     ("another CA", foreignCert, "is not issued by the cluster's CA"),
                     ("expired", expiredCert, "expired on"),
                 })
        {
            var error = await HostileConnectAsync(gateway, clusterId, cert);
            output.WriteLine($"hostile client ({what}): {error?.GetType().Name}: {error?.Message}");
            Assert.True(error is not null, $"a hostile client ({what}) reached the cluster");
            if (logged is not null) Assert.Contains($"refused a connection: ", silo.Output);
            if (logged is not null) Assert.Contains(logged, silo.Output);
        }

        // The job the cluster's client submitted is still there, and the client still reaches it.
        var status = await ChildProcess.RunAsync("status", ["status", "--job", "tls-job", "--tls", Path.Combine(pki, "client"), .. cluster], null, TimeSpan.FromMinutes(2));
        Assert.True(status.Code == 0, status.Output);
        Assert.Contains("tls-job: running", status.Output);
        var intruder = await ChildProcess.RunAsync("status-intruder", ["status", "--job", "intruder", "--tls", Path.Combine(pki, "client"), .. cluster], null, TimeSpan.FromMinutes(2));
        Assert.DoesNotContain("intruder: running", intruder.Output);   // none of the refused submits reached the cluster
    }

    [Fact]
    public void Azure_table_clustering_refuses_plaintext_and_bad_certificate_folders_are_named()
    {
        var e = Assert.Throws<ArgumentException>(() => new ClusterSettings { Clustering = "azuretable", ConnectionString = "UseDevelopmentStorage=true" }.Validate());
        Assert.Contains("needs mutual TLS", e.Message);
        new ClusterSettings { Clustering = "azuretable", ConnectionString = "UseDevelopmentStorage=true", TlsDir = "/x" }.Validate();

        using var tmp = new TempDir();
        var missing = Assert.Throws<TlsConfigurationException>(() => ClusterTls.Load(tmp.Path));
        Assert.Contains("has no tls.crt", missing.Message);
        string pki = MakeCerts(tmp.Sub("pki"));
        string mixed = tmp.Sub("mixed");
        Directory.CreateDirectory(mixed);
        File.Copy(Path.Combine(pki, "client", "tls.crt"), Path.Combine(mixed, "tls.crt"));
        File.Copy(Path.Combine(pki, "silo", "tls.key"), Path.Combine(mixed, "tls.key"));   // another certificate's key
        File.Copy(Path.Combine(pki, "ca", "ca.crt"), Path.Combine(mixed, "ca.crt"));
        var wrongKey = Assert.Throws<TlsConfigurationException>(() => ClusterTls.Load(mixed));
        Assert.Contains(mixed, wrongKey.Message);
        Assert.DoesNotContain("PRIVATE KEY", wrongKey.Message);
        var ok = ClusterTls.Load(Path.Combine(pki, "client"));
        Assert.True(ok.Certificate.HasPrivateKey);
        Assert.Null(ok.Check(ok.Certificate));
    }
}
