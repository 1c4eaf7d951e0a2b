using System.Runtime.InteropServices;

namespace LlavaMech.Pipeline;

/// <summary>
/// SIGINT (Ctrl+C) and SIGTERM (kill, systemd, Kubernetes, timeout) for the commands that run pipeline work, handled
/// the same way in one place: the first signal is caught (the process does not die) and cancels <see cref="Token"/>
/// so the command can stop leasing, drop in-flight shards without committing them and exit; a second signal is left
/// to its default action (the process ends at once). Exit codes follow the shell convention 128 + signal number.
/// </summary>
public sealed class ShutdownSignals : IDisposable
{
    /// <summary>Exit code after SIGINT (128 + 2).</summary>
    public const int SigIntExitCode = 130;

    /// <summary>Exit code after SIGTERM (128 + 15).</summary>
    public const int SigTermExitCode = 143;

    private readonly CancellationTokenSource _cts = new();
    private readonly PosixSignalRegistration[] _registrations;
    private readonly Action<string>? _onSignal;
    private int _signal;   // 0: none yet; else the PosixSignal (negative numbers) + 1000

    /// <param name="onSignal">called with the signal's name (SIGINT, SIGTERM) when the first one arrives.</param>
    public ShutdownSignals(Action<string>? onSignal = null)
    {
        _onSignal = onSignal;
        _registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    /// <summary>Cancelled by the first SIGINT or SIGTERM.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>The signal received, if any.</summary>
    public PosixSignal? Signal => Volatile.Read(ref _signal) is var s and not 0 ? (PosixSignal)(s - 1000) : null;

    /// <summary>SIGTERM or SIGINT, for messages.</summary>
    public string SignalName => Signal == PosixSignal.SIGTERM ? "SIGTERM" : "SIGINT";

    /// <summary>143 after SIGTERM, 130 after SIGINT.</summary>
    public int ExitCode => Signal == PosixSignal.SIGTERM ? SigTermExitCode : SigIntExitCode;

    private void Handle(PosixSignalContext context)
    {
        // The first signal starts the graceful stop; a repeated one takes the default action (terminate now).
        if (Interlocked.CompareExchange(ref _signal, (int)context.Signal + 1000, 0) != 0) return;
        context.Cancel = true;
        _onSignal?.Invoke(SignalName);
        _cts.Cancel();
    }

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _cts.Dispose();
    }
}
