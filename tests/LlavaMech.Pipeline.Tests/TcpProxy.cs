using System.Net;
using System.Net.Sockets;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// A loopback TCP forwarder to <c>targetPort</c> that can be closed and reopened on the same port: closed, its port
/// refuses connections and every open connection is dropped (an endpoint that went away); reopened, it forwards again.
/// </summary>
public sealed class TcpProxy : IDisposable
{
    private readonly int _target;
    private readonly object _gate = new();
    private readonly List<TcpClient> _connections = [];
    private TcpListener? _listener;
    private CancellationTokenSource? _cts;

    public TcpProxy(int targetPort)
    {
        _target = targetPort;
        Port = PipelineHost.FreePort();
    }

    public int Port { get; }

    public bool IsOpen { get { lock (_gate) return _listener is not null; } }

    public void Open()
    {
        lock (_gate)
        {
            if (_listener is not null) return;
            _cts = new CancellationTokenSource();
            var listener = new TcpListener(IPAddress.Loopback, Port);
            listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Start();
            _listener = listener;
            _ = AcceptAsync(listener, _cts.Token);
        }
    }

    /// <summary>Waits until a connection to <see cref="Port"/> is accepted (the reopened listener is up), or throws after <paramref name="timeout"/>.</summary>
    public async Task WaitUntilAcceptingAsync(TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            using var probe = new TcpClient();
            try { await probe.ConnectAsync(IPAddress.Loopback, Port); return; }
            catch (SocketException e) when (clock.Elapsed < timeout) { _ = e; await Task.Delay(100); }
        }
    }

    /// <summary>Stops listening and resets every open connection.</summary>
    public void Close()
    {
        lock (_gate)
        {
            if (_listener is null) return;
            _cts!.Cancel();
            _listener.Stop();
            _listener = null;
            foreach (var c in _connections) Drop(c);
            _connections.Clear();
        }
    }

    private async Task AcceptAsync(TcpListener listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await listener.AcceptTcpClientAsync(ct); }
            catch (Exception) { return; }
            var upstream = new TcpClient();
            try { await upstream.ConnectAsync(IPAddress.Loopback, _target, ct); }
            catch (Exception)
            {
                Drop(client);
                Drop(upstream);
                continue;
            }
            lock (_gate)
            {
                if (ct.IsCancellationRequested)
                {
                    Drop(client);
                    Drop(upstream);
                    return;
                }
                _connections.Add(client);
                _connections.Add(upstream);
            }
            _ = PumpAsync(client, upstream, ct);
            _ = PumpAsync(upstream, client, ct);
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to, CancellationToken ct)
    {
        try { await from.GetStream().CopyToAsync(to.GetStream(), ct); }
        catch (Exception) { }
        // Either side ended: end the pair (HTTP connections are not half-closed).
        lock (_gate)
        {
            _connections.Remove(from);
            _connections.Remove(to);
        }
        Drop(from);
        Drop(to);
    }

    private static void Drop(TcpClient c)
    {
        try
        {
            c.Client.LingerState = new LingerOption(true, 0);   // reset, not a graceful close
        }
        catch (Exception) { }
        c.Dispose();
    }

    public void Dispose() => Close();
}

/// <summary>Sets an environment variable of this process for a scope (the assembly runs one test at a time).</summary>
public sealed class EnvScope : IDisposable
{
    private readonly string _name;
    private readonly string? _old;

    public EnvScope(string name, string? value)
    {
        _name = name;
        _old = Environment.GetEnvironmentVariable(name);
        Environment.SetEnvironmentVariable(name, value);
    }

    public void Dispose() => Environment.SetEnvironmentVariable(_name, _old);
}
