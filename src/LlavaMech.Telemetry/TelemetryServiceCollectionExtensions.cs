using System.Reflection;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace LlavaMech.Telemetry;

/// <summary>Registration of the pipeline's telemetry in a host (silo or client).</summary>
public static class TelemetryServiceCollectionExtensions
{
    /// <summary>
    /// Adds the pipeline's telemetry: <see cref="PipelineMetrics"/> (meter <c>LlavaMech.Pipeline</c>),
    /// <see cref="ReadinessState"/> with the gates of <see cref="TelemetryOptions.ReadinessGates"/>, the
    /// <see cref="HealthEndpoint"/> on <see cref="TelemetryOptions.HealthPort"/> (0: none), GPU memory from NVML where the
    /// driver is present, JSON console logs when <c>Telemetry:LogFormat</c> is json, and, only where an OTLP endpoint is
    /// set (<c>OTEL_EXPORTER_OTLP_ENDPOINT</c> or a per-signal one, see <see cref="OtlpSettings"/>), the OpenTelemetry SDK
    /// exporting the pipeline's metrics and spans (plus .NET runtime and Orleans ones) over OTLP.
    /// </summary>
    /// <param name="configuration">the host's configuration (section <c>Telemetry</c>; <c>OTEL_*</c> keys, else the environment).</param>
    /// <param name="configure">changes to the options read from <paramref name="configuration"/>.</param>
    public static IServiceCollection AddLlavaMechTelemetry(this IServiceCollection services, IConfiguration configuration,
        Func<TelemetryOptions, TelemetryOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        var options = TelemetryOptions.FromConfiguration(configuration);
        if (configure is not null) options = configure(options);
        var otlp = OtlpSettings.FromConfiguration(configuration);

        services.AddMetrics();
        services.TryAddSingleton(options);
        services.TryAddSingleton(otlp);
        services.TryAddSingleton<PipelineMetrics>();
        services.TryAddSingleton(_ => new ReadinessState(options.ReadinessGates));
        services.AddHostedService<NvmlObserver>();
        if (options.HealthPort > 0)
        {
            services.TryAddSingleton<HealthEndpoint>();
            services.AddHostedService(sp => sp.GetRequiredService<HealthEndpoint>());
        }
        if (options.LogFormat == "json")
            services.AddLogging(logging => logging.AddLlavaMechJsonConsole());
        if (otlp.Enabled)
            AddOpenTelemetry(services, options, otlp);
        return services;
    }

    /// <summary>
    /// Console logs as one JSON object a line (UTC timestamp, level, category, message, state and scopes), what a
    /// cluster's log collector parses without rules. Keeps the host's choice of standard output or error.
    /// </summary>
    public static ILoggingBuilder AddLlavaMechJsonConsole(this ILoggingBuilder logging)
    {
        logging.AddJsonConsole(o =>
        {
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";
            o.IncludeScopes = true;
            o.JsonWriterOptions = new JsonWriterOptions { Indented = false };
        });
        // AddJsonConsole sets the formatter; say it again after anything registered earlier (e.g. a simple console).
        logging.Services.Configure<ConsoleLoggerOptions>(o => o.FormatterName = ConsoleFormatterNames.Json);
        return logging;
    }

    private static void AddOpenTelemetry(IServiceCollection services, TelemetryOptions options, OtlpSettings otlp)
    {
        string version = typeof(TelemetryServiceCollectionExtensions).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                         ?? typeof(TelemetryServiceCollectionExtensions).Assembly.GetName().Version?.ToString() ?? "unknown";
        string instance = Environment.GetEnvironmentVariable("POD_NAME") is { Length: > 0 } pod ? pod : Environment.MachineName;
        var builder = services.AddOpenTelemetry()
            .ConfigureResource(r => r
                .AddService(otlp.ServiceName ?? options.ServiceName, serviceVersion: version, serviceInstanceId: instance)
                .AddAttributes(otlp.ResourceAttributes));

        if (otlp.Metrics is { } metrics)
            builder.WithMetrics(m =>
            {
                m.AddMeter(TelemetryNames.Meter);
                if (options.OrleansTelemetry) m.AddMeter(TelemetryNames.OrleansMeters);
                if (options.RuntimeMetrics) m.AddRuntimeInstrumentation();
                m.AddOtlpExporter((exporter, reader) =>
                {
                    Apply(exporter, metrics);
                    reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = otlp.MetricExportIntervalMilliseconds;
                });
            });

        if (otlp.Traces is { } traces)
            builder.WithTracing(t =>
            {
                t.AddSource(TelemetryNames.ActivitySource);
                if (options.OrleansTelemetry) t.AddSource(TelemetryNames.OrleansActivitySources);
                t.SetSampler(Sampler(otlp));
                t.AddOtlpExporter(exporter => Apply(exporter, traces));
            });
    }

    private static void Apply(OtlpExporterOptions exporter, OtlpSignal signal)
    {
        // Set programmatically, the endpoint is used as it is (no /v1/... appended): OtlpSettings already built the full URL.
        exporter.Endpoint = signal.Endpoint;
        exporter.Protocol = signal.Protocol == "grpc" ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
        exporter.TimeoutMilliseconds = signal.TimeoutMilliseconds;
        if (signal.Headers is not null) exporter.Headers = signal.Headers;
    }

    internal static Sampler Sampler(OtlpSettings otlp) => otlp.Sampler switch
    {
        "always_on" => new AlwaysOnSampler(),
        "always_off" => new AlwaysOffSampler(),
        "traceidratio" => new TraceIdRatioBasedSampler(otlp.SamplerRatio),
        "parentbased_always_off" => new ParentBasedSampler(new AlwaysOffSampler()),
        "parentbased_traceidratio" => new ParentBasedSampler(new TraceIdRatioBasedSampler(otlp.SamplerRatio)),
        _ => new ParentBasedSampler(new AlwaysOnSampler()),
    };

    /// <summary>Registers NVML's GPU memory with <see cref="PipelineMetrics"/> while the host runs (nothing without an NVIDIA driver).</summary>
    private sealed class NvmlObserver(PipelineMetrics metrics, ILogger<NvmlObserver> log) : IHostedService
    {
        private IDisposable? _registration;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            _registration = NvmlGpuMemory.ObserveAll(metrics, out string reason);
            log.LogDebug("GPU memory metrics: {Reason}", reason);
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken)
        {
            Interlocked.Exchange(ref _registration, null)?.Dispose();
            return Task.CompletedTask;
        }
    }
}
