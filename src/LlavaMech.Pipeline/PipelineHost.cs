using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using LlavaMech.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace LlavaMech.Pipeline;

/// <summary>Builds silo and client hosts for the CLI (and anyone embedding the pipeline).</summary>
public static class PipelineHost
{
    /// <summary>
    /// The in-process silo of <c>run</c> and <c>reanalyze</c>: localhost clustering on two free ports, a cluster id of this
    /// process, and the <c>LLAVAMECH_</c> environment (e.g. <c>LLAVAMECH_Telemetry__*</c>, a probe port or JSON logs where
    /// it runs in a pod) as its configuration.
    /// </summary>
    public static IHost BuildInProcessSilo(PipelineSiloOptions pipeline, LogLevel logLevel)
    {
        var cluster = new ClusterSettings
        {
            SiloPort = FreePort(), GatewayPort = FreePort(), ClusterId = "llavamech-run-" + Environment.ProcessId, ResponseTimeout = TimeSpan.FromSeconds(30),
        };
        return BuildSilo(pipeline, cluster, logLevel, new ConfigurationBuilder().AddEnvironmentVariables("LLAVAMECH_").Build());
    }

    /// <summary>
    /// A silo host with the pipeline: clustering from <paramref name="cluster"/>, devices and workers from
    /// <paramref name="pipeline"/>; logs go to standard error at <paramref name="logLevel"/> and above (Orleans' own
    /// only at error level unless <paramref name="logLevel"/> is information or lower). Telemetry
    /// (<see cref="TelemetryServiceCollectionExtensions.AddLlavaMechTelemetry"/>) from the <c>Telemetry</c> section and the
    /// <c>OTEL_*</c> keys of <paramref name="configuration"/> (none: defaults and the process environment's <c>OTEL_*</c>):
    /// <c>/healthz</c> and <c>/readyz</c> on <c>Telemetry:HealthPort</c> (0, the default: no endpoint) with the gates
    /// host, device and, when <see cref="PipelineSiloOptions.Preload"/> is set, model (<see cref="SiloReadiness"/>),
    /// JSON logs with <c>Telemetry:LogFormat=json</c>, OTLP export where an endpoint is set.
    /// </summary>
    public static IHost BuildSilo(PipelineSiloOptions pipeline, ClusterSettings cluster, LogLevel logLevel = LogLevel.Warning,
        IConfiguration? configuration = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        if (configuration is not null) builder.Configuration.AddConfiguration(configuration);
        ConfigureLogging(builder.Logging, logLevel);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        // The process decides what a signal does (<see cref="ShutdownSignals"/>: SIGTERM and SIGINT stop the silo
        // gracefully, giving its leases back); the default console lifetime would also catch them.
        builder.Services.AddSingleton<IHostLifetime, ProcessOwnedLifetime>();
        // Before Orleans: the health endpoint starts first, so /healthz answers (and /readyz says 503) while the silo
        // joins its cluster and loads its model.
        builder.Services.AddLlavaMechTelemetry(builder.Configuration);
        builder.UseOrleans(silo => silo.UseCluster(cluster).AddLlavaMechPipeline(pipeline));
        return builder.Build();
    }

    /// <summary>A client host for a running cluster.</summary>
    public static IHost BuildClient(ClusterSettings cluster, LogLevel logLevel = LogLevel.Warning)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        ConfigureLogging(builder.Logging, logLevel);
        builder.UseOrleansClient(client => client.UseCluster(cluster));
        return builder.Build();
    }

    /// <summary>
    /// Runs <paramref name="body"/> with a client connected to the cluster of <paramref name="cluster"/> (started, then
    /// stopped after). A cluster that cannot be reached throws <see cref="InvalidOperationException"/> naming it and
    /// how to start a silo.
    /// </summary>
    public static T WithClient<T>(ClusterSettings cluster, Func<PipelineClient, T> body)
    {
        using var host = BuildClient(cluster);
        try
        {
            using var timeout = new CancellationTokenSource(cluster.ConnectTimeout);
            try { host.StartAsync(timeout.Token).GetAwaiter().GetResult(); }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                throw new TimeoutException($"no gateway completed a connection within {cluster.ConnectTimeout.TotalSeconds:0} s");
            }
        }
        catch (Exception e) when (e is not (ArgumentException or TlsConfigurationException))
        {
            // A TLS refusal reaches the client as a closed connection; say what to check on each side.
            string hint = cluster.TlsDir is null
                ? " Is a silo running (./llavamech silo)? A cluster with mutual TLS needs this client's certificate folder (--tls DIR)."
                : $" Is a silo running (./llavamech silo)? With mutual TLS the gateway accepts only a client certificate issued by the cluster's CA " +
                  $"and valid now, and this client accepts only a gateway certificate issued by the CA in {Path.Combine(cluster.TlsDir, ClusterTls.AuthorityFile)}.";
            throw new InvalidOperationException($"cannot connect to cluster '{cluster.ClusterId}' ({cluster.Clustering}" +
                                                (cluster.Clustering == "localhost" ? $", gateway port {cluster.GatewayPort}" : "") + $"): {e.Message.TrimEnd('.')}.{hint}", e);
        }
        try
        {
            return body(new PipelineClient(host.Services.GetRequiredService<IClusterClient>()));
        }
        finally
        {
            try { host.StopAsync(TimeSpan.FromSeconds(10)).GetAwaiter().GetResult(); } catch (OperationCanceledException) { }
        }
    }

    private static void ConfigureLogging(ILoggingBuilder logging, LogLevel level)
    {
        logging.ClearProviders();
        // Warnings and errors name their exception's type and message; the stack trace only at debug level or with LLAVAMECH_DEBUG=1.
        bool traces = level <= LogLevel.Debug || Environment.GetEnvironmentVariable("LLAVAMECH_DEBUG") is "1" or "true";
        logging.AddConsole(o => o.FormatterName = BriefConsoleFormatter.Name);
        logging.AddConsoleFormatter<BriefConsoleFormatter, BriefConsoleFormatterOptions>(o => { o.TimestampFormat = "HH:mm:ss "; o.StackTraces = traces; });
        logging.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        logging.SetMinimumLevel(level);
        // Orleans warns about ServerGC and watchdog delays on every start; keep its noise out unless asked for.
        logging.AddFilter("Orleans", level <= LogLevel.Information ? LogLevel.Warning : LogLevel.Error);
        logging.AddFilter("Microsoft", level <= LogLevel.Information ? LogLevel.Warning : LogLevel.Error);
        logging.AddFilter("Polly", LogLevel.Warning);   // Orleans' placement retries log every call at information level
    }

    /// <summary>A TCP port that is free on the loopback interface right now.</summary>
    /// <summary>Stops <paramref name="host"/> once process <paramref name="pid"/> is gone (checked every second).</summary>
    public static void StopWithParent(IHost host, int pid, Action<string> notice)
    {
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        var thread = new Thread(() =>
        {
            while (!lifetime.ApplicationStopping.IsCancellationRequested)
            {
                if (!Alive(pid))
                {
                    notice($"llavamech silo: parent process {pid} exited; stopping");
                    lifetime.StopApplication();
                    // A silo that cannot stop cleanly within a minute (nothing left to hand work to) just exits.
                    Thread.Sleep(TimeSpan.FromSeconds(60));
                    Environment.Exit(3);
                }
                Thread.Sleep(1000);
            }
        }) { IsBackground = true, Name = "llavamech-parent-watch" };
        thread.Start();
    }

    private static bool Alive(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        try { return ((IPEndPoint)l.LocalEndpoint).Port; }
        finally { l.Stop(); }
    }
}

/// <summary>A host lifetime that leaves signals to the process: the host stops when <see cref="IHostApplicationLifetime.StopApplication"/> is called.</summary>
internal sealed class ProcessOwnedLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
