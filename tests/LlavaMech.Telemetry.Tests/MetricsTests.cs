using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using LlavaMech.Telemetry;
using Microsoft.Extensions.DependencyInjection;

namespace LlavaMech.Telemetry.Tests;

/// <summary>Collects what a <see cref="PipelineMetrics"/> instance records, through a <see cref="MeterListener"/> on its own meter only.</summary>
internal sealed class Recorder : IDisposable
{
    private readonly MeterListener _listener = new();
    public ConcurrentQueue<(string Instrument, double Value, Dictionary<string, object?> Tags)> Measurements { get; } = new();
    public HashSet<string> Published { get; } = [];

    public Recorder(Meter meter)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (!ReferenceEquals(instrument.Meter, meter)) return;
            lock (Published) Published.Add(instrument.Name);
            listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
        _listener.Start();
    }

    private void Add(Instrument i, double v, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var d = new Dictionary<string, object?>();
        foreach (var t in tags) d[t.Key] = t.Value;
        Measurements.Enqueue((i.Name, v, d));
    }

    /// <summary>Reads every observable instrument once (what an exporter does at each collection).</summary>
    public void Collect() => _listener.RecordObservableInstruments();

    public List<(double Value, Dictionary<string, object?> Tags)> Of(string instrument) =>
        Measurements.Where(m => m.Instrument == instrument).Select(m => (m.Value, m.Tags)).ToList();

    public void Clear() => Measurements.Clear();

    public void Dispose() => _listener.Dispose();
}

public sealed class MetricsTests : IDisposable
{
    private readonly ServiceProvider _services;
    private readonly PipelineMetrics _metrics;
    private readonly Recorder _recorder;

    public MetricsTests()
    {
        _services = new ServiceCollection().AddMetrics().AddSingleton<PipelineMetrics>().BuildServiceProvider();
        _metrics = _services.GetRequiredService<PipelineMetrics>();
        _recorder = new Recorder(_metrics.Meter);
    }

    public void Dispose()
    {
        _recorder.Dispose();
        _services.Dispose();
    }

    [Fact]
    public void The_meter_is_named_for_the_pipeline_and_publishes_every_instrument()
    {
        Assert.Equal("LlavaMech.Pipeline", _metrics.Meter.Name);
        Assert.Equal(TelemetryNames.Meter, _metrics.Meter.Name);
        foreach (var name in new[]
                 {
                     TelemetryNames.ExamplesProcessed, TelemetryNames.ExampleDuration, TelemetryNames.Shards, TelemetryNames.ShardDuration,
                     TelemetryNames.Failures, TelemetryNames.QueueDepth, TelemetryNames.ActiveLeases, TelemetryNames.GpuMemoryUsed,
                     TelemetryNames.GpuMemoryTotal,
                 })
            Assert.Contains(name, _recorder.Published);
    }

    [Fact]
    public void Examples_are_counted_with_device_and_outcome()
    {
        _metrics.ExamplesProcessed(30, "cuda:0");
        _metrics.ExamplesProcessed(2, "cuda:0", "rejected");
        _metrics.ExamplesProcessed(0, "cuda:0"); // nothing to count: no measurement
        var m = _recorder.Of(TelemetryNames.ExamplesProcessed);
        Assert.Equal(2, m.Count);
        Assert.Equal(30, m[0].Value);
        Assert.Equal("cuda:0", m[0].Tags["device"]);
        Assert.Equal("ok", m[0].Tags["outcome"]);
        Assert.Equal(2, m[1].Value);
        Assert.Equal("rejected", m[1].Tags["outcome"]);
    }

    [Fact]
    public void Shard_latency_is_a_histogram_in_seconds_and_failed_or_lost_shards_count_as_failures()
    {
        _metrics.ShardFinished(TimeSpan.FromMilliseconds(2500), "cpu", "committed");
        _metrics.ShardFinished(TimeSpan.FromSeconds(1), "cpu", "failed");
        _metrics.ShardFinished(TimeSpan.FromSeconds(3), "cpu", "lost");
        _metrics.ExampleDuration(TimeSpan.FromMilliseconds(40), "cpu");

        var durations = _recorder.Of(TelemetryNames.ShardDuration);
        Assert.Equal([2.5, 1.0, 3.0], durations.Select(d => d.Value));
        Assert.Equal(["committed", "failed", "lost"], durations.Select(d => (string)d.Tags["outcome"]!));
        Assert.Equal(3, _recorder.Of(TelemetryNames.Shards).Count);
        var failures = _recorder.Of(TelemetryNames.Failures);
        Assert.Equal(["shard", "lease_lost"], failures.Select(f => (string)f.Tags["kind"]!));
        Assert.Equal(0.04, Assert.Single(_recorder.Of(TelemetryNames.ExampleDuration)).Value, 6);

        _metrics.Failure("model_load", "cuda:1");
        _metrics.Failure("grain_call");
        failures = _recorder.Of(TelemetryNames.Failures);
        Assert.Equal("cuda:1", failures[2].Tags["device"]);
        Assert.False(failures[3].Tags.ContainsKey("device"));
    }

    [Fact]
    public void Queue_depth_and_leases_are_read_from_the_delegates_at_each_collection()
    {
        long depth0 = 3, depth1 = 0;
        using var r0 = _metrics.ObserveQueueDepth("cuda:0", () => depth0);
        var r1 = _metrics.ObserveQueueDepth("cuda:1", () => depth1);
        using var leases = _metrics.ObserveActiveLeases(() => 2);

        _recorder.Collect();
        var q = _recorder.Of(TelemetryNames.QueueDepth);
        Assert.Equal([("cuda:0", 3.0), ("cuda:1", 0.0)], q.Select(m => ((string)m.Tags["device"]!, m.Value)));
        Assert.Equal(2, Assert.Single(_recorder.Of(TelemetryNames.ActiveLeases)).Value);

        _recorder.Clear();
        depth0 = 7;
        r1.Dispose();
        _recorder.Collect();
        q = _recorder.Of(TelemetryNames.QueueDepth);
        Assert.Equal(7, Assert.Single(q).Value);
    }

    [Fact]
    public void Gpu_memory_reports_only_what_the_delegate_knows_and_survives_a_failing_delegate()
    {
        long? used = null;
        using var gpu = _metrics.ObserveGpuMemory("cuda:0", () => used, () => 80L << 30);
        using var broken = _metrics.ObserveGpuMemory("cuda:1", () => throw new InvalidOperationException("no CUDA"));

        _recorder.Collect();
        Assert.Empty(_recorder.Of(TelemetryNames.GpuMemoryUsed)); // null: nothing reported; throwing: nothing, no exception
        var total = Assert.Single(_recorder.Of(TelemetryNames.GpuMemoryTotal));
        Assert.Equal(80L << 30, total.Value);
        Assert.Equal("torch", total.Tags["source"]);

        _recorder.Clear();
        used = 14L << 30;
        _recorder.Collect();
        var u = Assert.Single(_recorder.Of(TelemetryNames.GpuMemoryUsed));
        Assert.Equal(14L << 30, u.Value);
        Assert.Equal("cuda:0", u.Tags["device"]);
    }

    [Fact]
    public void Nvml_is_optional_and_reports_consistent_numbers_where_a_driver_exists()
    {
        using var nvml = NvmlGpuMemory.TryOpen(out string reason);
        Assert.False(string.IsNullOrWhiteSpace(reason));
        if (nvml is null)
        {
            // No NVIDIA driver (CI, CPU nodes): nothing registered, nothing thrown.
            Assert.Null(NvmlGpuMemory.ObserveAll(_metrics, out _));
            _recorder.Collect();
            Assert.Empty(_recorder.Of(TelemetryNames.GpuMemoryUsed));
            return;
        }
        Assert.True(nvml.DeviceCount > 0);
        var m = nvml.Read(0);
        Assert.NotNull(m);
        Assert.InRange(m.Value.Used, 0, m.Value.Total);
        Assert.Null(nvml.Read(nvml.DeviceCount));
    }

    [Fact]
    public void Shard_and_example_spans_carry_the_job_shard_and_device()
    {
        var stopped = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == TelemetryNames.ActivitySource,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);

        using (var shard = PipelineTracing.StartShard("job-1", 4, "cuda:0", 32, "silo/cuda:0#0"))
        {
            Assert.NotNull(shard);
            using (var ex = PipelineTracing.StartExample("job-1", "line-17", "cuda:0"))
            {
                Assert.NotNull(ex);
                Assert.Equal(shard!.TraceId, ex!.TraceId);
                Assert.Equal(shard.SpanId, ex.ParentSpanId);
                ex.Fail(new InvalidOperationException("CUDA out of memory"), "rejected");
            }
            shard.Succeed("committed");
        }

        var spans = stopped.Where(a => (string?)a.GetTagItem(TelemetryNames.JobIdAttribute) == "job-1").ToList();
        var example = Assert.Single(spans, a => a.OperationName == "example");
        var shardSpan = Assert.Single(spans, a => a.OperationName == "shard");
        Assert.Equal(4, shardSpan.GetTagItem(TelemetryNames.ShardAttribute));
        Assert.Equal(32, shardSpan.GetTagItem(TelemetryNames.ExamplesAttribute));
        Assert.Equal("committed", shardSpan.GetTagItem(TelemetryNames.OutcomeAttribute));
        Assert.Equal(ActivityStatusCode.Ok, shardSpan.Status);
        Assert.Equal(ActivityStatusCode.Error, example.Status);
        Assert.Equal("CUDA out of memory", example.StatusDescription);
        Assert.Contains(example.Events, e => e.Name == "exception");
    }
}
