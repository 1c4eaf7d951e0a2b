using System.Collections.Concurrent;
using System.Net;
using System.Text;
using LlavaMech.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace LlavaMech.Telemetry.Tests;

public sealed class OtlpSettingsTests
{
    private static OtlpSettings Resolve(params (string Key, string Value)[] vars)
    {
        var d = vars.ToDictionary(v => v.Key, v => v.Value);
        return OtlpSettings.Resolve(k => d.GetValueOrDefault(k));
    }

    [Fact]
    public void Without_an_endpoint_nothing_is_exported()
    {
        var s = Resolve(("OTEL_SERVICE_NAME", "llavamech-silo"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "  "));
        Assert.False(s.Enabled);
        Assert.Null(s.Traces);
        Assert.Null(s.Metrics);
        Assert.Equal("llavamech-silo", s.ServiceName);
    }

    [Fact]
    public void Grpc_uses_the_endpoint_as_it_is_and_http_protobuf_appends_the_signal_path()
    {
        var grpc = Resolve(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring:4317"));
        Assert.Equal("grpc", grpc.Traces!.Protocol);
        Assert.Equal(new Uri("http://otel-collector.monitoring:4317"), grpc.Traces.Endpoint);
        Assert.Equal(new Uri("http://otel-collector.monitoring:4317"), grpc.Metrics!.Endpoint);

        var http = Resolve(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://metrics.example/otlp/v1/metrics"), ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc,tenant=t1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"), ("OTEL_METRIC_EXPORT_INTERVAL", "15000"));
        Assert.Equal(new Uri("http://collector:4318/v1/traces"), http.Traces!.Endpoint);
        Assert.Equal(new Uri("https://metrics.example/otlp/v1/metrics"), http.Metrics!.Endpoint);
        Assert.Equal("api-key=abc,tenant=t1", http.Traces.Headers);
        Assert.Equal(5000, http.Metrics.TimeoutMilliseconds);
        Assert.Equal(15000, http.MetricExportIntervalMilliseconds);
    }

    [Fact]
    public void A_signal_can_be_turned_off_and_the_sdk_disabled()
    {
        var s = Resolve(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_TRACES_EXPORTER", "none"));
        Assert.Null(s.Traces);
        Assert.NotNull(s.Metrics);
        Assert.False(Resolve(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_SDK_DISABLED", "true")).Enabled);
        // Only a signal-specific endpoint: only that signal.
        var only = Resolve(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"));
        Assert.NotNull(only.Traces);
        Assert.Null(only.Metrics);
    }

    [Fact]
    public void Resource_attributes_sampler_and_bad_values()
    {
        var s = Resolve(("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=llavamech-silo-0, deployment.environment=gpu,note=a%20b,bad"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.25"));
        Assert.Equal(["k8s.pod.name", "deployment.environment", "note"], s.ResourceAttributes.Select(a => a.Key));
        Assert.Equal("a b", s.ResourceAttributes[2].Value);
        Assert.Equal(0.25, s.SamplerRatio);
        Assert.IsType<ParentBasedSampler>(TelemetryServiceCollectionExtensions.Sampler(s));

        Assert.Throws<ArgumentException>(() => Resolve(("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")));
        Assert.Throws<ArgumentException>(() => Resolve(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")));
        Assert.Throws<ArgumentException>(() => Resolve(("OTEL_TRACES_SAMPLER_ARG", "2")));
        Assert.Throws<ArgumentException>(() => Resolve(("OTEL_METRIC_EXPORT_INTERVAL", "soon")));
    }

    [Fact]
    public void Options_from_the_telemetry_section()
    {
        var o = TelemetryOptions.FromConfiguration(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Telemetry:HealthPort"] = "9090", ["Telemetry:LogFormat"] = "JSON", ["Telemetry:ReadinessGates"] = "none",
            ["Telemetry:RuntimeMetrics"] = "false",
        }).Build());
        Assert.Equal(9090, o.HealthPort);
        Assert.Equal("json", o.LogFormat);
        Assert.Empty(o.ReadinessGates);
        Assert.False(o.RuntimeMetrics);
        var defaults = TelemetryOptions.FromConfiguration(new ConfigurationBuilder().Build());
        Assert.Equal(["device", "model"], defaults.ReadinessGates);
        Assert.Equal(0, defaults.HealthPort); // off unless configured: silos on one machine or in one test never collide
        Assert.Equal("simple", defaults.LogFormat);
        Assert.Throws<ArgumentException>(() => TelemetryOptions.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Telemetry:HealthPort"] = "70000" }).Build()));
        Assert.Throws<ArgumentException>(() => TelemetryOptions.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Telemetry:LogFormat"] = "xml" }).Build()));
    }

    [Fact]
    public void Json_console_replaces_the_simple_formatter_registered_before_it()
    {
        var services = new ServiceCollection();
        services.AddLogging(b => b.AddSimpleConsole());
        services.AddLlavaMechTelemetry(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Telemetry:LogFormat"] = "json", ["Telemetry:HealthPort"] = "0",
        }).Build());
        using var sp = services.BuildServiceProvider();
        Assert.Equal(ConsoleFormatterNames.Json, sp.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue.FormatterName);
        var json = sp.GetRequiredService<IOptionsMonitor<JsonConsoleFormatterOptions>>().CurrentValue;
        Assert.True(json.UseUtcTimestamp);
        Assert.Equal("2026-01-02T03:04:05.006Z", new DateTime(2026, 1, 2, 3, 4, 5, 6, DateTimeKind.Utc).ToString(json.TimestampFormat, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Without_an_endpoint_no_opentelemetry_provider_is_registered()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT"))) return; // the environment sets one
        var services = new ServiceCollection().AddLogging();
        services.AddLlavaMechTelemetry(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Telemetry:HealthPort"] = "0" }).Build());
        using var sp = services.BuildServiceProvider();
        Assert.Null(sp.GetService<MeterProvider>());
        Assert.Null(sp.GetService<TracerProvider>());
        Assert.NotNull(sp.GetService<PipelineMetrics>());
    }
}

/// <summary>The whole export path: the SDK posts OTLP/HTTP protobuf to a collector stand-in on loopback.</summary>
public sealed class OtlpExportTests
{
    private sealed class FakeCollector : IAsyncDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _loop;
        public ConcurrentQueue<(string Path, string ContentType, byte[] Body)> Requests { get; } = new();

        public FakeCollector(int port)
        {
            Port = port;
            _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            _listener.Start();
            _loop = Task.Run(async () =>
            {
                while (_listener.IsListening)
                {
                    HttpListenerContext c;
                    try { c = await _listener.GetContextAsync(); }
                    catch (Exception) { return; }
                    using var ms = new MemoryStream();
                    await c.Request.InputStream.CopyToAsync(ms);
                    Requests.Enqueue((c.Request.Url!.AbsolutePath, c.Request.ContentType ?? "", ms.ToArray()));
                    c.Response.StatusCode = 200;
                    c.Response.ContentType = "application/x-protobuf";
                    c.Response.Close();
                }
            });
        }

        public int Port { get; }

        public bool Received(string path, string text) =>
            Requests.Any(r => r.Path == path && Encoding.UTF8.GetString(r.Body).Contains(text, StringComparison.Ordinal));

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            _listener.Close();
            try { await _loop.WaitAsync(TimeSpan.FromSeconds(5)); } catch (Exception) { }
        }
    }

    [Fact]
    public async Task Metrics_and_spans_reach_an_otlp_http_collector()
    {
        await using var collector = new FakeCollector(HealthEndpointTests.FreePort());
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = $"http://127.0.0.1:{collector.Port}",
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_SERVICE_NAME"] = "llavamech-test-silo",
            ["OTEL_RESOURCE_ATTRIBUTES"] = "deployment.environment=test",
            ["Telemetry:HealthPort"] = "0",
        }).Build();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddLlavaMechTelemetry(config);
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var metrics = host.Services.GetRequiredService<PipelineMetrics>();
            metrics.ExamplesProcessed(5, "cpu");
            metrics.ShardFinished(TimeSpan.FromSeconds(2), "cpu", "committed");
            using (var shard = PipelineTracing.StartShard("job-otlp", 0, "cpu", 5))
            {
                Assert.NotNull(shard); // the SDK listens to our source
                shard.Succeed("committed");
            }

            Assert.True(host.Services.GetRequiredService<MeterProvider>().ForceFlush(10_000));
            Assert.True(host.Services.GetRequiredService<TracerProvider>().ForceFlush(10_000));
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (DateTime.UtcNow < deadline && !(collector.Received("/v1/metrics", TelemetryNames.ExamplesProcessed) && collector.Received("/v1/traces", "job-otlp")))
                await Task.Delay(50);

            Assert.True(collector.Received("/v1/metrics", TelemetryNames.ExamplesProcessed), "no metrics export with llavamech.examples.processed");
            Assert.True(collector.Received("/v1/metrics", TelemetryNames.ShardDuration));
            Assert.True(collector.Received("/v1/metrics", "llavamech-test-silo"));
            Assert.True(collector.Received("/v1/traces", "job-otlp"), "no trace export with the shard span");
            Assert.True(collector.Received("/v1/traces", "deployment.environment"));
            Assert.All(collector.Requests, r => Assert.Equal("application/x-protobuf", r.ContentType));
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
