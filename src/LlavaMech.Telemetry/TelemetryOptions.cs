using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace LlavaMech.Telemetry;

/// <summary>
/// Settings of <see cref="TelemetryServiceCollectionExtensions.AddLlavaMechTelemetry"/>, read from the
/// <c>Telemetry</c> section (environment: <c>LLAVAMECH_Telemetry__HealthPort</c> and so on, through the silo's
/// configuration) and, for export, from the standard <c>OTEL_*</c> variables (see <see cref="OtlpSettings"/>).
/// </summary>
public sealed record TelemetryOptions
{
    /// <summary>
    /// Port of <c>/healthz</c> and <c>/readyz</c>; 0 (the default): no endpoint, so that silos on a developer's machine and
    /// several silos in one test process never collide. The Kubernetes manifests set 8080.
    /// </summary>
    public int HealthPort { get; init; }

    /// <summary>Host part of the listener prefix: <c>+</c> (every address, the default in a pod) or an address such as 127.0.0.1.</summary>
    public string HealthBind { get; init; } = "+";

    /// <summary>Console log format: <c>simple</c> (the host's own, unchanged) or <c>json</c> (one JSON object a line, UTC timestamps).</summary>
    public string LogFormat { get; init; } = "simple";

    /// <summary>The readiness gates to wait for (default: device and model). The host gate is always added by the endpoint.</summary>
    public IReadOnlyList<string> ReadinessGates { get; init; } = [Telemetry.ReadinessGates.Device, Telemetry.ReadinessGates.Model];

    /// <summary>Export .NET runtime metrics (GC, thread pool, JIT) beside the pipeline's when OTLP export is on.</summary>
    public bool RuntimeMetrics { get; init; } = true;

    /// <summary>Export Orleans' own meter and activity sources when OTLP export is on.</summary>
    public bool OrleansTelemetry { get; init; } = true;

    /// <summary>service.name when OTEL_SERVICE_NAME is not set.</summary>
    public string ServiceName { get; init; } = "llavamech";

    /// <summary>
    /// Reads the <c>Telemetry</c> section: <c>HealthPort</c>, <c>HealthBind</c>, <c>LogFormat</c>, <c>ReadinessGates</c>
    /// (comma list, "none" for none), <c>RuntimeMetrics</c>, <c>OrleansTelemetry</c>, <c>ServiceName</c>.
    /// </summary>
    public static TelemetryOptions FromConfiguration(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var c = configuration.GetSection("Telemetry");
        var o = new TelemetryOptions();
        if (c["HealthPort"] is { Length: > 0 } port)
            o = o with
            {
                HealthPort = int.TryParse(port, NumberStyles.Integer, CultureInfo.InvariantCulture, out int p) && p is >= 0 and <= 65535
                    ? p : throw new ArgumentException($"Telemetry:HealthPort must be a port number (0 turns the endpoint off), got '{port}'"),
            };
        if (c["HealthBind"] is { Length: > 0 } bind) o = o with { HealthBind = bind };
        if (c["LogFormat"] is { Length: > 0 } format)
            o = o with
            {
                LogFormat = format.ToLowerInvariant() is "json" or "simple" ? format.ToLowerInvariant()
                    : throw new ArgumentException($"Telemetry:LogFormat must be simple or json, got '{format}'"),
            };
        if (c["ReadinessGates"] is { } gates)
            o = o with
            {
                ReadinessGates = gates.Trim().Equals("none", StringComparison.OrdinalIgnoreCase)
                    ? []
                    : gates.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            };
        if (c["RuntimeMetrics"] is { Length: > 0 } rm) o = o with { RuntimeMetrics = Bool(rm, "Telemetry:RuntimeMetrics") };
        if (c["OrleansTelemetry"] is { Length: > 0 } ot) o = o with { OrleansTelemetry = Bool(ot, "Telemetry:OrleansTelemetry") };
        if (c["ServiceName"] is { Length: > 0 } sn) o = o with { ServiceName = sn };
        return o;
    }

    private static bool Bool(string s, string name) =>
        bool.TryParse(s, out bool b) ? b : throw new ArgumentException($"{name} must be true or false, got '{s}'");
}
