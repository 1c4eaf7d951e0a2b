using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace LlavaMech.Telemetry;

/// <summary>Where and how one signal (traces or metrics) is exported.</summary>
/// <param name="Endpoint">the full URL the exporter posts to (grpc: the collector's address; http/protobuf: with /v1/traces or /v1/metrics).</param>
/// <param name="Protocol">grpc or http/protobuf.</param>
public sealed record OtlpSignal(Uri Endpoint, string Protocol, string? Headers, int TimeoutMilliseconds);

/// <summary>
/// The standard OpenTelemetry exporter variables, resolved as the specification says: <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>
/// (a base: http/protobuf appends <c>/v1/traces</c> and <c>/v1/metrics</c>), the per-signal
/// <c>OTEL_EXPORTER_OTLP_TRACES_ENDPOINT</c> / <c>..._METRICS_ENDPOINT</c> (used as they are), <c>..._PROTOCOL</c>
/// (grpc, the .NET default, or http/protobuf), <c>..._HEADERS</c>, <c>..._TIMEOUT</c>, <c>OTEL_METRIC_EXPORT_INTERVAL</c>,
/// <c>OTEL_SERVICE_NAME</c>, <c>OTEL_RESOURCE_ATTRIBUTES</c>, <c>OTEL_TRACES_SAMPLER</c> (+ <c>_ARG</c>),
/// <c>OTEL_TRACES_EXPORTER</c> / <c>OTEL_METRICS_EXPORTER</c> = none and <c>OTEL_SDK_DISABLED</c>. Each is read from
/// the host's configuration first, then from the process environment: a silo host built without the default
/// configuration sources still honours them. Export is on only where an endpoint is set.
/// </summary>
public sealed record OtlpSettings
{
    public OtlpSignal? Traces { get; init; }
    public OtlpSignal? Metrics { get; init; }
    public int MetricExportIntervalMilliseconds { get; init; } = 60_000;
    public string? ServiceName { get; init; }
    public IReadOnlyList<KeyValuePair<string, object>> ResourceAttributes { get; init; } = [];

    /// <summary>always_on, always_off, traceidratio, parentbased_always_on (default), parentbased_always_off, parentbased_traceidratio.</summary>
    public string Sampler { get; init; } = "parentbased_always_on";
    public double SamplerRatio { get; init; } = 1.0;

    public bool Enabled => Traces is not null || Metrics is not null;

    public static OtlpSettings FromConfiguration(IConfiguration? configuration) =>
        Resolve(key => configuration?[key] is { Length: > 0 } v ? v : Environment.GetEnvironmentVariable(key));

    /// <summary>Resolves the settings from <paramref name="get"/> (a variable name to its value, null or empty when unset).</summary>
    public static OtlpSettings Resolve(Func<string, string?> get)
    {
        string? Get(string key) => get(key) is { } v && !string.IsNullOrWhiteSpace(v) ? v.Trim() : null;

        var settings = new OtlpSettings
        {
            ServiceName = Get("OTEL_SERVICE_NAME"),
            ResourceAttributes = ParseResourceAttributes(Get("OTEL_RESOURCE_ATTRIBUTES")),
            MetricExportIntervalMilliseconds = Milliseconds(Get("OTEL_METRIC_EXPORT_INTERVAL"), "OTEL_METRIC_EXPORT_INTERVAL", 60_000),
            Sampler = (Get("OTEL_TRACES_SAMPLER") ?? "parentbased_always_on").ToLowerInvariant(),
            SamplerRatio = Ratio(Get("OTEL_TRACES_SAMPLER_ARG")),
        };
        if (settings.Sampler is not ("always_on" or "always_off" or "traceidratio" or "parentbased_always_on" or "parentbased_always_off" or "parentbased_traceidratio"))
            throw new ArgumentException($"OTEL_TRACES_SAMPLER '{settings.Sampler}' is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)");
        if (string.Equals(Get("OTEL_SDK_DISABLED"), "true", StringComparison.OrdinalIgnoreCase)) return settings;

        return settings with
        {
            Traces = Signal("TRACES", "v1/traces", Get("OTEL_TRACES_EXPORTER"), Get),
            Metrics = Signal("METRICS", "v1/metrics", Get("OTEL_METRICS_EXPORTER"), Get),
        };
    }

    private static OtlpSignal? Signal(string signal, string path, string? exporter, Func<string, string?> get)
    {
        if (exporter is not null && exporter.Split(',', StringSplitOptions.TrimEntries).All(e => e.Equals("none", StringComparison.OrdinalIgnoreCase)))
            return null;
        string protocol = (get($"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") ?? get("OTEL_EXPORTER_OTLP_PROTOCOL") ?? "grpc").ToLowerInvariant();
        if (protocol is not ("grpc" or "http/protobuf"))
            throw new ArgumentException($"OTLP protocol '{protocol}' is not supported here (grpc or http/protobuf)");
        Uri endpoint;
        if (get($"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") is { } specific)
            endpoint = Absolute(specific, $"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT");
        else if (get("OTEL_EXPORTER_OTLP_ENDPOINT") is { } common)
        {
            var baseUri = Absolute(common, "OTEL_EXPORTER_OTLP_ENDPOINT");
            endpoint = protocol == "grpc" ? baseUri : new Uri(baseUri.AbsoluteUri.TrimEnd('/') + "/" + path);
        }
        else return null;
        string? headers = get($"OTEL_EXPORTER_OTLP_{signal}_HEADERS") ?? get("OTEL_EXPORTER_OTLP_HEADERS");
        int timeout = Milliseconds(get($"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT") ?? get("OTEL_EXPORTER_OTLP_TIMEOUT"), "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000);
        return new OtlpSignal(endpoint, protocol, headers, timeout);
    }

    private static Uri Absolute(string text, string name) =>
        Uri.TryCreate(text, UriKind.Absolute, out var u) && (u.Scheme == Uri.UriSchemeHttp || u.Scheme == Uri.UriSchemeHttps)
            ? u : throw new ArgumentException($"{name} must be an absolute http(s) URL, got '{text}'");

    private static int Milliseconds(string? text, string name, int fallback)
    {
        if (text is null) return fallback;
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int ms) && ms > 0
            ? ms : throw new ArgumentException($"{name} must be a positive number of milliseconds, got '{text}'");
    }

    private static double Ratio(string? text)
    {
        if (text is null) return 1.0;
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double r) && r is >= 0 and <= 1
            ? r : throw new ArgumentException($"OTEL_TRACES_SAMPLER_ARG must be a ratio in [0, 1], got '{text}'");
    }

    /// <summary>Parses <c>key1=value1,key2=value2</c> (values percent-decoded), as OTEL_RESOURCE_ATTRIBUTES is written.</summary>
    public static IReadOnlyList<KeyValuePair<string, object>> ParseResourceAttributes(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return [];
        var list = new List<KeyValuePair<string, object>>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0) continue;
            list.Add(new(part[..eq].Trim(), Uri.UnescapeDataString(part[(eq + 1)..].Trim())));
        }
        return list;
    }
}
