using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace LlavaMech.Telemetry;

/// <summary>
/// The pipeline's instruments on the meter <see cref="TelemetryNames.Meter"/>: counters and histograms the worker
/// records into, and observable gauges fed by delegates the silo registers (queue depth of each device runner, active
/// leases, GPU memory). One instance per host (a DI singleton made from <see cref="IMeterFactory"/>); thread-safe.
/// Nothing is exported unless a listener (the OpenTelemetry SDK, dotnet-counters, a test's MeterListener) subscribes.
/// </summary>
public sealed class PipelineMetrics : IDisposable
{
    private readonly Counter<long> _examples;
    private readonly Histogram<double> _exampleDuration;
    private readonly Counter<long> _shards;
    private readonly Histogram<double> _shardDuration;
    private readonly Counter<long> _failures;
    private readonly ConcurrentDictionary<long, Source> _sources = new();
    private long _nextSource;

    private enum SourceKind { QueueDepth, ActiveLeases, GpuUsed, GpuTotal }

    private sealed record Source(SourceKind Kind, string? Device, string? Origin, Func<long?> Read);

    public PipelineMetrics(IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        Meter = meterFactory.Create(new MeterOptions(TelemetryNames.Meter) { Version = typeof(PipelineMetrics).Assembly.GetName().Version?.ToString() });
        _examples = Meter.CreateCounter<long>(TelemetryNames.ExamplesProcessed, "{example}", "Examples analysed; examples/s is the rate of this counter.");
        _exampleDuration = Meter.CreateHistogram<double>(TelemetryNames.ExampleDuration, "s", "Analysis time of one example on its device.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });
        _shards = Meter.CreateCounter<long>(TelemetryNames.Shards, "{shard}", "Shards finished by this silo, by outcome.");
        _shardDuration = Meter.CreateHistogram<double>(TelemetryNames.ShardDuration, "s", "From lease to report of one shard.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600] });
        _failures = Meter.CreateCounter<long>(TelemetryNames.Failures, "{failure}", "Failures by kind: example, shard, lease_lost, finalize, model_load, grain_call.");
        Meter.CreateObservableGauge(TelemetryNames.QueueDepth, () => Observe(SourceKind.QueueDepth), "{example}", "Examples queued or running in each device runner.");
        Meter.CreateObservableGauge(TelemetryNames.ActiveLeases, () => Observe(SourceKind.ActiveLeases), "{lease}", "Shard leases this silo holds.");
        Meter.CreateObservableGauge(TelemetryNames.GpuMemoryUsed, () => Observe(SourceKind.GpuUsed), "By", "GPU memory in use.");
        Meter.CreateObservableGauge(TelemetryNames.GpuMemoryTotal, () => Observe(SourceKind.GpuTotal), "By", "GPU memory in total.");
    }

    /// <summary>The meter (for tests and for listeners that want this very instance).</summary>
    public Meter Meter { get; }

    // ---------------------------------------------------------------- recording

    /// <summary>Counts <paramref name="count"/> examples analysed on <paramref name="device"/>; <paramref name="outcome"/> ok or rejected.</summary>
    public void ExamplesProcessed(long count, string device, string outcome = "ok")
    {
        if (count <= 0) return;
        _examples.Add(count, new(TelemetryNames.DeviceTag, device), new(TelemetryNames.OutcomeTag, outcome));
    }

    /// <summary>Records one example's analysis time.</summary>
    public void ExampleDuration(TimeSpan elapsed, string device) =>
        _exampleDuration.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>(TelemetryNames.DeviceTag, device));

    /// <summary>
    /// Records a finished shard: its duration and its outcome (committed, already_committed, failed, lost, abandoned).
    /// A failed or lost shard also counts as a failure of kind shard / lease_lost.
    /// </summary>
    public void ShardFinished(TimeSpan elapsed, string device, string outcome)
    {
        var tags = new TagList { { TelemetryNames.DeviceTag, device }, { TelemetryNames.OutcomeTag, outcome } };
        _shards.Add(1, tags);
        _shardDuration.Record(elapsed.TotalSeconds, tags);
        if (outcome == "failed") Failure("shard", device);
        else if (outcome == "lost") Failure("lease_lost", device);
    }

    /// <summary>Counts one failure of <paramref name="kind"/> (example, shard, lease_lost, finalize, model_load, grain_call).</summary>
    public void Failure(string kind, string? device = null)
    {
        if (device is null) _failures.Add(1, new KeyValuePair<string, object?>(TelemetryNames.KindTag, kind));
        else _failures.Add(1, new(TelemetryNames.KindTag, kind), new(TelemetryNames.DeviceTag, device));
    }

    // ---------------------------------------------------------------- observed values

    /// <summary>Reports <paramref name="depth"/> (read at each collection) as the queue depth of <paramref name="device"/>. Dispose to stop.</summary>
    public IDisposable ObserveQueueDepth(string device, Func<long> depth) => Add(SourceKind.QueueDepth, device, null, () => depth());

    /// <summary>Reports the leases this silo holds. Dispose to stop.</summary>
    public IDisposable ObserveActiveLeases(Func<long> leases) => Add(SourceKind.ActiveLeases, null, null, () => leases());

    /// <summary>
    /// Reports GPU memory of <paramref name="device"/>: bytes in use and, when given, in total. A delegate that returns
    /// null (no CUDA, stats not available) reports nothing for that collection. <paramref name="source"/> tells where the
    /// numbers come from (torch: the caching allocator; nvml: the driver's view of the whole device). Dispose to stop.
    /// </summary>
    public IDisposable ObserveGpuMemory(string device, Func<long?> usedBytes, Func<long?>? totalBytes = null, string source = "torch")
    {
        var used = Add(SourceKind.GpuUsed, device, source, usedBytes);
        if (totalBytes is null) return used;
        var total = Add(SourceKind.GpuTotal, device, source, totalBytes);
        return new Both(used, total);
    }

    private IDisposable Add(SourceKind kind, string? device, string? origin, Func<long?> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        long id = Interlocked.Increment(ref _nextSource);
        _sources[id] = new Source(kind, device, origin, read);
        return new Registration(this, id);
    }

    private IEnumerable<Measurement<long>> Observe(SourceKind kind)
    {
        var list = new List<Measurement<long>>();
        foreach (var (_, s) in _sources.OrderBy(kv => kv.Key))
        {
            if (s.Kind != kind) continue;
            long? value;
            // A collection must never throw into the exporter: a delegate that fails reports nothing this time.
            try { value = s.Read(); }
            catch (Exception) { value = null; }
            if (value is not { } v) continue;
            var tags = new TagList();
            if (s.Device is not null) tags.Add(TelemetryNames.DeviceTag, s.Device);
            if (s.Origin is not null) tags.Add(TelemetryNames.SourceTag, s.Origin);
            list.Add(new Measurement<long>(v, tags));
        }
        return list;
    }

    /// <summary>Drops the registered delegates (the meter belongs to the factory, which disposes it).</summary>
    public void Dispose() => _sources.Clear();

    private sealed class Registration(PipelineMetrics owner, long id) : IDisposable
    {
        public void Dispose() => owner._sources.TryRemove(id, out _);
    }

    private sealed class Both(IDisposable a, IDisposable b) : IDisposable
    {
        public void Dispose()
        {
            a.Dispose();
            b.Dispose();
        }
    }
}
