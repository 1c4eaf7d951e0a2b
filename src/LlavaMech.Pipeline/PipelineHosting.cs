using System.Globalization;
using System.Net;
using Azure.Data.Tables;
using LlavaMech.Runtime;
using LlavaMech.Storage;
using LlavaMech.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Orleans.Runtime.Hosting;
using Orleans.Serialization;

namespace LlavaMech.Pipeline;

/// <summary>What a silo contributes to the pipeline.</summary>
public sealed record PipelineSiloOptions
{
    /// <summary>Devices this silo computes on (cpu, cuda:0, ...); empty: the silo hosts grains but pulls no work.</summary>
    public IReadOnlyList<string> Devices { get; init; } = ["cpu"];

    /// <summary>Runner threads (each with its own model copy) and lease loops per device.</summary>
    public int WorkersPerDevice { get; init; } = 1;

    /// <summary>
    /// Shard leases held per runner thread. With 2 (the default) a worker computes the next shard while it writes and
    /// commits the last one (Parquet, uploads: the device does not wait for the storage); 1 works strictly one shard
    /// at a time.
    /// </summary>
    public int LeasesPerThread { get; init; } = 2;

    /// <summary>How often an idle worker asks for work.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Where job state lives: "memory" (lost with the silo that holds it: fine for one silo), or a folder every silo
    /// sees / az://container/prefix, so a job survives the loss of its grain's silo.
    /// </summary>
    public string StateStore { get; init; } = "memory";

    /// <summary>Examples queued per device runner (0: 2 per thread).</summary>
    public int RunnerCapacity { get; init; }

    /// <summary>A model to load when the silo starts (else on the first shard).</summary>
    public ModelSpec? Preload { get; init; }

    /// <summary>Where this silo's jobs may read and write (none configured: anywhere the process may).</summary>
    public PathRoots Roots { get; init; } = new();

    /// <summary>libtorch intra-op threads for the whole process (0: libtorch's default, one per core). With several
    /// runner threads on a CPU, cores / runner threads avoids oversubscription.</summary>
    public int TorchThreads { get; init; }

    /// <summary>
    /// Reads the <c>Pipeline</c> section: <c>Devices</c> ("cpu", "cuda:0,cuda:1", "none"), <c>WorkersPerDevice</c>, <c>LeasesPerThread</c>,
    /// <c>PollMs</c>, <c>StateStore</c>, <c>RunnerCapacity</c>, <c>TorchThreads</c>, <c>PreloadModel</c> (+ <c>PreloadDType</c>),
    /// <c>Roots:Models</c>, <c>Roots:Manifests</c>, <c>Roots:Images</c>, <c>Roots:Outputs</c> (<see cref="PathRoots"/>).
    /// </summary>
    public static PipelineSiloOptions FromConfiguration(IConfiguration configuration)
    {
        var c = configuration.GetSection("Pipeline");
        var o = new PipelineSiloOptions();
        if (c["Devices"] is { } devices)
            o = o with { Devices = ParseDevices(devices) };
        if (c["WorkersPerDevice"] is { } w) o = o with { WorkersPerDevice = Int(w, "Pipeline:WorkersPerDevice", 1) };
        if (c["LeasesPerThread"] is { } lpt) o = o with { LeasesPerThread = Int(lpt, "Pipeline:LeasesPerThread", 1) };
        if (c["PollMs"] is { } p) o = o with { PollInterval = TimeSpan.FromMilliseconds(Int(p, "Pipeline:PollMs", 10)) };
        if (c["StateStore"] is { Length: > 0 } s) o = o with { StateStore = s };
        if (c["RunnerCapacity"] is { } rc) o = o with { RunnerCapacity = Int(rc, "Pipeline:RunnerCapacity", 0) };
        if (c["TorchThreads"] is { } tt) o = o with { TorchThreads = Int(tt, "Pipeline:TorchThreads", 0) };
        if (c["PreloadModel"] is { Length: > 0 } pm) o = o with { Preload = new ModelSpec(Path.GetFullPath(pm), c["PreloadDType"] ?? "auto") };
        o = o with { Roots = PathRoots.FromConfiguration(configuration) };
        return o;
    }

    public static IReadOnlyList<string> ParseDevices(string text)
    {
        var list = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(d => d.ToLowerInvariant()).ToList();
        if (list is ["none"]) return [];
        foreach (var d in list)
            if (!(d is "cpu" or "cuda" or "auto" || (d.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(d[5..], out _))))
                throw new ArgumentException($"Pipeline:Devices: unknown device '{d}' (use cpu, cuda, cuda:N, or none)");
        if (list.Distinct().Count() != list.Count) throw new ArgumentException($"Pipeline:Devices lists a device twice: '{text}'");
        return list;
    }

    internal static int Int(string s, string name, int min) =>
        int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min
            ? v : throw new ArgumentException($"{name} must be an integer >= {min}, got '{s}'");

    public void Validate()
    {
        if (WorkersPerDevice < 1) throw new ArgumentException($"workers per device must be at least 1, got {WorkersPerDevice}");
        if (LeasesPerThread < 1) throw new ArgumentException($"leases per thread must be at least 1, got {LeasesPerThread}");
        if (PollInterval <= TimeSpan.Zero) throw new ArgumentException("poll interval must be positive");
        if (StateStore != "memory") _ = OutputLocation.Parse(StateStore);
        Roots.Validate();
    }
}

/// <summary>How a silo (or client) joins a cluster.</summary>
public sealed record ClusterSettings
{
    /// <summary>localhost (one machine; the first silo is the primary) or azuretable (membership in an Azure Storage table).</summary>
    public string Clustering { get; init; } = "localhost";

    /// <summary>Azure Storage connection string for azuretable clustering (also <c>LLAVAMECH_CLUSTERING_CONNECTION</c>).</summary>
    public string? ConnectionString { get; init; }

    public string ClusterId { get; init; } = "llavamech";
    public string ServiceId { get; init; } = "llavamech";
    public int SiloPort { get; init; } = 11111;
    public int GatewayPort { get; init; } = 30000;

    /// <summary>localhost clustering: the primary silo's port (default: this silo's, i.e. this silo is the primary).</summary>
    public int? PrimarySiloPort { get; init; }

    /// <summary>The address other silos reach this one at (azuretable; default: the machine's first IPv4 address).</summary>
    public string? AdvertisedAddress { get; init; }

    /// <summary>Grain calls that get no answer fail after this long (and are retried by the pipeline).</summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A client that has not joined the cluster after this long gives up (a gateway that never completes the
    /// handshake, e.g. a TLS gateway asked in plaintext, would otherwise keep it waiting).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Mutual TLS: a folder with <c>tls.crt</c>, <c>tls.key</c> and <c>ca.crt</c> (<see cref="ClusterTls"/>; a mounted
    /// Kubernetes TLS Secret). Required unless the cluster is <c>localhost</c> clustering, which listens on loopback only;
    /// with it, silos and clients accept only peers with a certificate of the same CA.
    /// </summary>
    public string? TlsDir { get; init; }

    public const string ConnectionVariable = "LLAVAMECH_CLUSTERING_CONNECTION";

    /// <summary>The TLS folder of a client when no option or configuration names one.</summary>
    public const string TlsDirVariable = "LLAVAMECH_TLS_DIR";

    /// <summary>Reads the <c>Cluster</c> section: Clustering, ConnectionString, ClusterId, ServiceId, SiloPort, GatewayPort, PrimarySiloPort, AdvertisedAddress, ResponseTimeoutSeconds, ConnectTimeoutSeconds, TlsDir (default <c>LLAVAMECH_TLS_DIR</c>).</summary>
    public static ClusterSettings FromConfiguration(IConfiguration configuration)
    {
        var c = configuration.GetSection("Cluster");
        var o = new ClusterSettings();
        if (c["Clustering"] is { Length: > 0 } k) o = o with { Clustering = k.ToLowerInvariant() };
        o = o with { ConnectionString = c["ConnectionString"] is { Length: > 0 } cs ? cs : Environment.GetEnvironmentVariable(ConnectionVariable) };
        if (c["ClusterId"] is { Length: > 0 } id) o = o with { ClusterId = id };
        if (c["ServiceId"] is { Length: > 0 } sid) o = o with { ServiceId = sid };
        if (c["SiloPort"] is { } sp) o = o with { SiloPort = PipelineSiloOptions.Int(sp, "Cluster:SiloPort", 1) };
        if (c["GatewayPort"] is { } gp) o = o with { GatewayPort = PipelineSiloOptions.Int(gp, "Cluster:GatewayPort", 1) };
        if (c["PrimarySiloPort"] is { Length: > 0 } pp) o = o with { PrimarySiloPort = PipelineSiloOptions.Int(pp, "Cluster:PrimarySiloPort", 1) };
        if (c["AdvertisedAddress"] is { Length: > 0 } a) o = o with { AdvertisedAddress = a };
        if (c["ConnectTimeoutSeconds"] is { } ct) o = o with { ConnectTimeout = TimeSpan.FromSeconds(PipelineSiloOptions.Int(ct, "Cluster:ConnectTimeoutSeconds", 1)) };
        if (c["ResponseTimeoutSeconds"] is { } rt) o = o with { ResponseTimeout = TimeSpan.FromSeconds(PipelineSiloOptions.Int(rt, "Cluster:ResponseTimeoutSeconds", 1)) };
        o = o with { TlsDir = c["TlsDir"] is { Length: > 0 } tls ? tls : Environment.GetEnvironmentVariable(TlsDirVariable) is { Length: > 0 } env ? env : null };
        return o;
    }

    public void Validate()
    {
        if (Clustering is not ("localhost" or "azuretable"))
            throw new ArgumentException($"clustering '{Clustering}': use localhost or azuretable");
        if (Clustering == "azuretable" && string.IsNullOrWhiteSpace(ConnectionString))
            throw new ArgumentException($"azuretable clustering needs a connection string (Cluster:ConnectionString or {ConnectionVariable})");
        if (AdvertisedAddress is not null && !IPAddress.TryParse(AdvertisedAddress, out _))
            throw new ArgumentException($"advertised address '{AdvertisedAddress}' is not an IP address");
        // Plaintext only where nothing leaves the machine: localhost clustering binds silos and gateways to loopback.
        if (Clustering != "localhost" && TlsDir is null)
            throw new ArgumentException($"{Clustering} clustering carries jobs between machines, so it needs mutual TLS: a folder with " +
                                        $"{ClusterTls.CertificateFile}, {ClusterTls.KeyFile} and {ClusterTls.AuthorityFile} (--tls DIR, Cluster:TlsDir or {TlsDirVariable}; " +
                                        "deploy/tls/make-dev-certs.sh makes a development CA). Plaintext is allowed only with localhost clustering.");
    }

    /// <summary>The loaded TLS files, or null without <see cref="TlsDir"/>.</summary>
    /// <exception cref="TlsConfigurationException">The files are missing or unusable (the message names which and why).</exception>
    public ClusterTls? LoadTls() => TlsDir is null ? null : ClusterTls.Load(TlsDir);
}

/// <summary>Registration of the pipeline in silos and clients.</summary>
public static class PipelineHosting
{
    /// <summary>The grain storage of jobs and the registry.</summary>
    public const string StorageName = "llavamech";

    /// <summary>
    /// Adds the pipeline to a silo: the silo's <see cref="ObjectStores"/> (one store per location, disposed with the
    /// host), grain state storage in it, the device runners (one per declared device), the worker
    /// that pulls shard leases, its <see cref="PipelineMetrics"/> and <see cref="SiloReadiness"/> (gauges; readiness gates
    /// where the host has <see cref="TelemetryServiceCollectionExtensions.AddLlavaMechTelemetry"/>). Clustering is the
    /// caller's (see <see cref="UseCluster(ISiloBuilder, ClusterSettings)"/>).
    /// </summary>
    public static ISiloBuilder AddLlavaMechPipeline(this ISiloBuilder silo, PipelineSiloOptions options)
    {
        options.Validate();
        silo.Services.TryAddSingleton(_ => new ObjectStores());
        if (options.StateStore == "memory")
            silo.AddMemoryGrainStorage(StorageName);
        else
            silo.Services.AddGrainStorage(StorageName, (sp, _) =>
                new ObjectStoreGrainStorage(sp.GetRequiredService<ObjectStores>().Open(options.StateStore), sp.GetRequiredService<Serializer>()));
        silo.Services.AddSingleton(options);
        silo.Services.AddSingleton<DevicePool>();
        silo.Services.AddHostedService(sp => sp.GetRequiredService<DevicePool>());
        silo.Services.AddSingleton<PipelineWorker>();
        silo.Services.AddHostedService(sp => sp.GetRequiredService<PipelineWorker>());
        silo.Services.AddMetrics();
        silo.Services.TryAddSingleton<PipelineMetrics>();
        silo.Services.AddHostedService<SiloReadiness>();
        return silo;
    }

    /// <summary>Clustering, endpoints and response timeout of a silo.</summary>
    public static ISiloBuilder UseCluster(this ISiloBuilder silo, ClusterSettings cluster)
    {
        cluster.Validate();
        if (cluster.Clustering == "localhost")
        {
            var primary = new IPEndPoint(IPAddress.Loopback, cluster.PrimarySiloPort ?? cluster.SiloPort);
            silo.UseLocalhostClustering(cluster.SiloPort, cluster.GatewayPort, primary, cluster.ServiceId, cluster.ClusterId);
        }
        else
        {
            silo.UseAzureStorageClustering(o => o.TableServiceClient = new TableServiceClient(cluster.ConnectionString));
            silo.Configure<Orleans.Configuration.ClusterOptions>(o => { o.ClusterId = cluster.ClusterId; o.ServiceId = cluster.ServiceId; });
            if (cluster.AdvertisedAddress is { } a)
                silo.ConfigureEndpoints(IPAddress.Parse(a), cluster.SiloPort, cluster.GatewayPort, listenOnAnyHostAddress: true);
            else
                silo.ConfigureEndpoints(cluster.SiloPort, cluster.GatewayPort, listenOnAnyHostAddress: true);
        }
        silo.Configure<SiloMessagingOptions>(o => o.ResponseTimeout = cluster.ResponseTimeout);
        if (cluster.LoadTls() is { } tls)
            silo.UseTls(tls.Certificate, o => tls.Configure(o, reason => Console.Error.WriteLine($"[llavamech] TLS: refused a connection: {reason}")));
        return silo;
    }

    /// <summary>Clustering and response timeout of a client (submit, status, cancel against a running cluster).</summary>
    public static IClientBuilder UseCluster(this IClientBuilder client, ClusterSettings cluster)
    {
        cluster.Validate();
        if (cluster.Clustering == "localhost")
            client.UseLocalhostClustering(cluster.GatewayPort, cluster.ServiceId, cluster.ClusterId);
        else
        {
            client.UseAzureStorageClustering(o => o.TableServiceClient = new TableServiceClient(cluster.ConnectionString));
            client.Configure<Orleans.Configuration.ClusterOptions>(o => { o.ClusterId = cluster.ClusterId; o.ServiceId = cluster.ServiceId; });
        }
        client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = cluster.ResponseTimeout);
        if (cluster.LoadTls() is { } tls)
            client.UseTls(tls.Certificate, o => tls.Configure(o, reason => Console.Error.WriteLine($"[llavamech] TLS: refused the gateway: {reason}")));
        return client;
    }
}
