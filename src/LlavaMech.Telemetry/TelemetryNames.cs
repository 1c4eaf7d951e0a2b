namespace LlavaMech.Telemetry;

/// <summary>
/// The names an operator sees: the meter and activity source of the pipeline, its instruments and their tags.
/// Instrument names follow OpenTelemetry's conventions (dotted, lower case, unit in the unit field); a Prometheus
/// backend shows them as e.g. <c>llavamech_examples_processed_total</c> and <c>llavamech_shard_duration_seconds</c>.
/// </summary>
public static class TelemetryNames
{
    /// <summary>The <see cref="System.Diagnostics.Metrics.Meter"/> of the pipeline.</summary>
    public const string Meter = "LlavaMech.Pipeline";

    /// <summary>The <see cref="System.Diagnostics.ActivitySource"/> of shard and example spans.</summary>
    public const string ActivitySource = "LlavaMech.Pipeline";

    /// <summary>Orleans' own meter and activity sources, exported beside ours when OTLP export is on.</summary>
    public static readonly string[] OrleansMeters = ["Microsoft.Orleans"];
    public static readonly string[] OrleansActivitySources = ["Microsoft.Orleans.Runtime", "Microsoft.Orleans.Application"];

    // ---------------------------------------------------------------- instruments

    /// <summary>Counter {example}: examples analysed (tags device, outcome = ok | rejected). Examples/s is its rate.</summary>
    public const string ExamplesProcessed = "llavamech.examples.processed";

    /// <summary>Histogram s: one example's analysis on its device (tags device).</summary>
    public const string ExampleDuration = "llavamech.example.duration";

    /// <summary>Counter {shard}: shards finished (tags device, outcome = committed | already_committed | failed | lost | abandoned).</summary>
    public const string Shards = "llavamech.shards";

    /// <summary>Histogram s: lease to report of one shard (tags device, outcome).</summary>
    public const string ShardDuration = "llavamech.shard.duration";

    /// <summary>Counter {failure}: failures (tags kind = example | shard | lease_lost | finalize | model_load | grain_call, device).</summary>
    public const string Failures = "llavamech.failures";

    /// <summary>Observable gauge {example}: examples queued or running in a device runner (tags device).</summary>
    public const string QueueDepth = "llavamech.queue.depth";

    /// <summary>Observable gauge {lease}: shard leases this silo holds.</summary>
    public const string ActiveLeases = "llavamech.leases.active";

    /// <summary>Observable gauge By: GPU memory in use (tags device, source = torch | nvml).</summary>
    public const string GpuMemoryUsed = "llavamech.gpu.memory.used";

    /// <summary>Observable gauge By: GPU memory in total (tags device, source).</summary>
    public const string GpuMemoryTotal = "llavamech.gpu.memory.total";

    // ---------------------------------------------------------------- tags

    public const string DeviceTag = "device";
    public const string OutcomeTag = "outcome";
    public const string KindTag = "kind";
    public const string SourceTag = "source";

    // ---------------------------------------------------------------- span attributes

    public const string JobIdAttribute = "llavamech.job.id";
    public const string ShardAttribute = "llavamech.shard";
    public const string ExamplesAttribute = "llavamech.examples";
    public const string ExampleIdAttribute = "llavamech.example.id";
    public const string DeviceAttribute = "llavamech.device";
    public const string WorkerAttribute = "llavamech.worker";
    public const string OutcomeAttribute = "llavamech.outcome";
}
