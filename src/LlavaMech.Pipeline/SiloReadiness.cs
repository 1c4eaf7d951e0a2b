using LlavaMech.Runtime;
using LlavaMech.Telemetry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlavaMech.Pipeline;

/// <summary>
/// Connects a silo's device runners and worker to its telemetry while the host runs:
/// <list type="bullet">
/// <item>the gauges <c>llavamech.queue.depth</c> (examples queued or running, per device runner) and
/// <c>llavamech.leases.active</c> of <see cref="PipelineMetrics"/>;</item>
/// <item>where the host has a <see cref="ReadinessState"/> (<see cref="TelemetryServiceCollectionExtensions.AddLlavaMechTelemetry"/>),
/// the <see cref="ReadinessGates.Device"/> gate: ready once every runner thread has checked its device, not ready while
/// a runner is faulted (device check failed, a thread died, <see cref="DeviceRunner.FaultAfterFailures"/> examples in
/// a row failed) and ready again when it recovers; and the <see cref="ReadinessGates.Model"/> gate: ready once every
/// runner thread has loaded <see cref="PipelineSiloOptions.Preload"/>, not required on a silo without a preloaded
/// model. A silo without devices (it hosts grains only) is ready as far as its devices go.</item>
/// </list>
/// Gates that the telemetry options do not list (<c>Telemetry:ReadinessGates</c>) are left alone.
/// </summary>
public sealed class SiloReadiness(
    DevicePool pool,
    PipelineWorker worker,
    PipelineSiloOptions options,
    PipelineMetrics metrics,
    ILogger<SiloReadiness> log,
    ReadinessState? readiness = null,
    TelemetryOptions? telemetry = null) : IHostedService
{
    private readonly List<IDisposable> _registrations = [];
    private readonly Lock _lock = new();
    private bool _deviceGate, _modelGate, _subscribed;
    private (bool Ready, string Detail, bool Fault)? _lastDevice, _lastModel;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var r in pool.Runners)
        {
            var runner = r;
            _registrations.Add(metrics.ObserveQueueDepth(runner.Device, () => runner.Pending));
        }
        _registrations.Add(metrics.ObserveActiveLeases(() => worker.ActiveLeases));

        if (readiness is null) return Task.CompletedTask;
        var gates = telemetry?.ReadinessGates ?? [ReadinessGates.Device, ReadinessGates.Model];
        _deviceGate = gates.Contains(ReadinessGates.Device);
        _modelGate = gates.Contains(ReadinessGates.Model) && options.Preload is not null && pool.Runners.Count > 0;
        if (gates.Contains(ReadinessGates.Model) && !_modelGate) readiness.NotRequired(ReadinessGates.Model);
        foreach (var r in pool.Runners) r.HealthChanged += OnHealthChanged;
        _subscribed = true;
        Update();
        return Task.CompletedTask;
    }

    private void OnHealthChanged(DeviceRunner _) => Update();

    /// <summary>Recomputes the gates from the runners (called on every runner event; cheap).</summary>
    internal void Update()
    {
        if (readiness is null) return;
        lock (_lock)
        {
            if (_deviceGate) Set(ReadinessGates.Device, DeviceState(), ref _lastDevice);
            if (_modelGate) Set(ReadinessGates.Model, ModelState(), ref _lastModel);
        }
    }

    private (bool Ready, string Detail, bool Fault) DeviceState()
    {
        if (pool.Runners.Count == 0) return (true, "no devices: this silo hosts grains only", false);
        var health = pool.Runners.Select(r => r.Health).ToList();
        var notReady = health.Where(h => h.State != DeviceRunnerState.Ready).ToList();
        return notReady.Count == 0
            ? (true, string.Join("; ", health.Select(h => h.Detail)), false)
            : (false, string.Join("; ", notReady.Select(h => h.Detail)), notReady.Any(h => h.State == DeviceRunnerState.Faulted));
    }

    private (bool Ready, string Detail, bool Fault) ModelState()
    {
        var pre = options.Preload!;
        if (pool.Runners.FirstOrDefault(r => r.PreloadError is not null) is { } failed)
            return (false, $"preloading {pre.Dir} on {failed.Device} failed: {failed.PreloadError}", true);
        int threads = pool.Runners.Sum(r => r.ThreadCount), loaded = pool.Runners.Sum(r => r.ThreadsPreloaded);
        return loaded >= threads
            ? (true, $"{pre.Dir} ({pre.DType}) loaded on {threads} runner thread(s)", false)
            : (false, $"loading {pre.Dir}: {loaded} of {threads} runner threads done", false);
    }

    private void Set(string gate, (bool Ready, string Detail, bool Fault) state, ref (bool Ready, string Detail, bool Fault)? last)
    {
        if (last == state) return;
        last = state;
        if (state.Ready) readiness!.MarkReady(gate, state.Detail);
        else readiness!.MarkNotReady(gate, state.Detail);
        if (state.Fault) log.LogWarning("readiness gate {Gate}: not ready ({Detail})", gate, state.Detail);
        else log.LogInformation("readiness gate {Gate}: {State} ({Detail})", gate, state.Ready ? "ready" : "waiting", state.Detail);
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        if (_subscribed)
            foreach (var r in pool.Runners) r.HealthChanged -= OnHealthChanged;
        _subscribed = false;
        foreach (var reg in _registrations) reg.Dispose();
        _registrations.Clear();
        return Task.CompletedTask;
    }
}
