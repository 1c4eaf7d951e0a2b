using System.Collections.Concurrent;

namespace LlavaMech.Telemetry;

/// <summary>Well-known readiness gates of a silo.</summary>
public static class ReadinessGates
{
    /// <summary>The host has started (the silo joined its cluster); set by <see cref="HealthEndpoint"/>, cleared when the host stops.</summary>
    public const string Host = "host";

    /// <summary>The silo's devices were checked (CUDA available and the named devices exist, or CPU).</summary>
    public const string Device = "device";

    /// <summary>The preloaded model is loaded on every device runner.</summary>
    public const string Model = "model";
}

/// <summary>One gate or check as <c>/readyz</c> and <c>/healthz</c> report it.</summary>
public sealed record HealthEntry(string Name, bool Ok, string? Detail);

/// <summary>What a probe sees: overall status and every gate or check.</summary>
public sealed record HealthReport(bool Ok, IReadOnlyList<HealthEntry> Entries);

/// <summary>
/// Whether this silo should receive work and count as available, for the Kubernetes readiness probe: ready when every
/// required gate is marked ready (pushed by the host: <see cref="MarkReady"/>) and every registered check passes
/// (pulled at probe time: <see cref="AddCheck"/>). A silo is not ready until its model is loaded and its device checked,
/// and stops being ready as soon as the host begins to stop, so a rollout waits for a silo that can actually compute
/// and a PodDisruptionBudget counts only those. Liveness (<c>/healthz</c>) is separate: the process answers and no
/// liveness check fails. Thread-safe.
/// </summary>
public sealed class ReadinessState
{
    private readonly ConcurrentDictionary<string, (bool Ready, string? Detail)> _gates = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Func<(bool Ok, string? Detail)>> _readyChecks = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Func<(bool Ok, string? Detail)>> _liveChecks = new(StringComparer.Ordinal);

    /// <summary>A state that waits for <paramref name="requiredGates"/> (none: ready once the checks pass).</summary>
    public ReadinessState(params IEnumerable<string> requiredGates)
    {
        foreach (var g in requiredGates) Require(g);
    }

    /// <summary>Adds a gate that must be marked ready (idempotent: an existing gate keeps its state).</summary>
    public void Require(string gate)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(gate);
        _gates.TryAdd(gate, (false, "waiting"));
    }

    /// <summary>Removes a gate this silo does not need (e.g. <see cref="ReadinessGates.Model"/> on a silo without a preloaded model).</summary>
    public void NotRequired(string gate) => _gates.TryRemove(gate, out _);

    /// <summary>Marks <paramref name="gate"/> ready (adding it when it was not required).</summary>
    public void MarkReady(string gate, string? detail = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(gate);
        _gates[gate] = (true, detail);
        Changed?.Invoke(this);
    }

    /// <summary>Marks <paramref name="gate"/> not ready, with the reason the probe shows.</summary>
    public void MarkNotReady(string gate, string reason)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(gate);
        _gates[gate] = (false, reason);
        Changed?.Invoke(this);
    }

    /// <summary>Adds a readiness check evaluated at each probe (e.g. every device runner has loaded its model).</summary>
    public void AddCheck(string name, Func<(bool Ok, string? Detail)> check)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        _readyChecks[name] = check ?? throw new ArgumentNullException(nameof(check));
    }

    /// <summary>Adds a liveness check evaluated at each <c>/healthz</c> (keep it cheap and only for states a restart fixes).</summary>
    public void AddLivenessCheck(string name, Func<(bool Ok, string? Detail)> check)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        _liveChecks[name] = check ?? throw new ArgumentNullException(nameof(check));
    }

    /// <summary>Raised after a gate changes.</summary>
    public event Action<ReadinessState>? Changed;

    /// <summary>True when every gate is ready and every readiness check passes.</summary>
    public bool IsReady => Readiness().Ok;

    /// <summary>The gates and readiness checks, sorted by name.</summary>
    public HealthReport Readiness()
    {
        var entries = _gates.Select(kv => new HealthEntry(kv.Key, kv.Value.Ready, kv.Value.Detail))
            .Concat(Run(_readyChecks))
            .OrderBy(e => e.Name, StringComparer.Ordinal)
            .ToList();
        return new HealthReport(entries.All(e => e.Ok), entries);
    }

    /// <summary>The liveness checks (ok when there are none).</summary>
    public HealthReport Liveness()
    {
        var entries = Run(_liveChecks).OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        return new HealthReport(entries.All(e => e.Ok), entries);
    }

    private static IEnumerable<HealthEntry> Run(ConcurrentDictionary<string, Func<(bool Ok, string? Detail)>> checks)
    {
        foreach (var (name, check) in checks)
        {
            HealthEntry entry;
            try
            {
                var (ok, detail) = check();
                entry = new HealthEntry(name, ok, detail);
            }
            catch (Exception e)
            {
                entry = new HealthEntry(name, false, $"check failed: {e.Message}");
            }
            yield return entry;
        }
    }
}
