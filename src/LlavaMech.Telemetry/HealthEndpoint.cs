using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace LlavaMech.Telemetry;

/// <summary>
/// A tiny HTTP endpoint for the Kubernetes probes (<see cref="HttpListener"/>: no ASP.NET Core in the image):
/// <c>GET /healthz</c> (liveness: 200 while the process serves and no liveness check fails) and <c>GET /readyz</c>
/// (readiness: 200 when <see cref="ReadinessState"/> is ready, else 503), each with a small JSON body naming every gate
/// and check. A hosted service: it listens from host start to host stop, marks the <see cref="ReadinessGates.Host"/> gate
/// ready when the host has started and not ready as soon as it begins to stop.
/// </summary>
public sealed class HealthEndpoint : IHostedService, IAsyncDisposable
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
    private readonly ReadinessState _state;
    private readonly TelemetryOptions _options;
    private readonly IHostApplicationLifetime? _lifetime;
    private readonly ILogger _log;
    private readonly List<CancellationTokenRegistration> _registrations = [];
    private HttpListener? _listener;
    private Task? _loop;

    public HealthEndpoint(ReadinessState state, TelemetryOptions options, IHostApplicationLifetime? lifetime = null, ILogger<HealthEndpoint>? log = null)
    {
        _state = state ?? throw new ArgumentNullException(nameof(state));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _lifetime = lifetime;
        _log = (ILogger?)log ?? NullLogger.Instance;
        if (_lifetime is not null) _state.Require(ReadinessGates.Host);
    }

    /// <summary>The port it listens on (the configured one), or 0 before start.</summary>
    public int Port { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_options.HealthPort == 0) return Task.CompletedTask;
        var listener = new HttpListener { IgnoreWriteExceptions = true };
        string prefix = $"http://{_options.HealthBind}:{_options.HealthPort}/";
        listener.Prefixes.Add(prefix);
        try { listener.Start(); }
        catch (Exception e) when (e is HttpListenerException or System.Net.Sockets.SocketException)
        {
            listener.Close();
            throw new InvalidOperationException($"health endpoint: cannot listen on {prefix} ({e.Message}); set Telemetry:HealthPort to a free port, or 0 to turn it off", e);
        }
        _listener = listener;
        Port = _options.HealthPort;
        if (_lifetime is not null)
        {
            _registrations.Add(_lifetime.ApplicationStarted.Register(() => _state.MarkReady(ReadinessGates.Host, "started")));
            _registrations.Add(_lifetime.ApplicationStopping.Register(() => _state.MarkNotReady(ReadinessGates.Host, "stopping")));
        }
        _loop = Task.Run(() => LoopAsync(listener), CancellationToken.None);
        _log.LogInformation("health endpoint listening on {Prefix} (/healthz, /readyz)", prefix);
        return Task.CompletedTask;
    }

    private async Task LoopAsync(HttpListener listener)
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await listener.GetContextAsync().ConfigureAwait(false); }
            catch (Exception) when (!listener.IsListening) { return; }
            catch (HttpListenerException e)
            {
                _log.LogWarning("health endpoint: {Error}", e.Message);
                continue;
            }
            catch (ObjectDisposedException) { return; }
            try { Answer(context); }
            catch (Exception e) { _log.LogWarning("health endpoint: answering {Path} failed: {Error}", context.Request.Url?.AbsolutePath, e.Message); }
        }
    }

    private void Answer(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        string path = request.Url?.AbsolutePath.TrimEnd('/') ?? "";
        int status;
        object body;
        if (request.HttpMethod is not ("GET" or "HEAD"))
        {
            status = 405;
            body = new { status = "method not allowed" };
            response.AddHeader("Allow", "GET, HEAD");
        }
        else if (path is "/healthz" or "/livez")
        {
            var report = _state.Liveness();
            status = report.Ok ? 200 : 503;
            body = Body(report);
        }
        else if (path == "/readyz")
        {
            var report = _state.Readiness();
            status = report.Ok ? 200 : 503;
            body = Body(report);
        }
        else
        {
            status = 404;
            body = new { status = "not found", paths = new[] { "/healthz", "/readyz" } };
        }
        byte[] bytes = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(body, Json));
        response.StatusCode = status;
        response.ContentType = "application/json; charset=utf-8";
        response.Headers["Cache-Control"] = "no-store";
        response.ContentLength64 = bytes.Length;
        if (request.HttpMethod != "HEAD") response.OutputStream.Write(bytes);
        response.Close();
    }

    private static object Body(HealthReport report) => new
    {
        status = report.Ok ? "ok" : "unavailable",
        checks = report.Entries.Select(e => new { name = e.Name, ok = e.Ok, detail = e.Detail }),
    };

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        foreach (var r in _registrations) await r.DisposeAsync().ConfigureAwait(false);
        _registrations.Clear();
        var listener = Interlocked.Exchange(ref _listener, null);
        if (listener is null) return;
        try { listener.Stop(); }
        finally { listener.Close(); }
        if (_loop is { } loop)
        {
            try { await loop.WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false); }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException) { }
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);
}
