using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using LlavaMech.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace LlavaMech.Telemetry.Tests;

public sealed class HealthEndpointTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    internal static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        try { return ((IPEndPoint)l.LocalEndpoint).Port; }
        finally { l.Stop(); }
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> GetAsync(int port, string path)
    {
        using var response = await Http.GetAsync($"http://127.0.0.1:{port}{path}");
        var text = await response.Content.ReadAsStringAsync();
        Assert.StartsWith("application/json", response.Content.Headers.ContentType?.ToString());
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private static TelemetryOptions Loopback(int port) => new() { HealthPort = port, HealthBind = "127.0.0.1" };

    [Fact]
    public async Task Readyz_answers_503_until_the_model_is_loaded_and_the_device_checked_then_200()
    {
        var state = new ReadinessState(ReadinessGates.Device, ReadinessGates.Model);
        int port = FreePort();
        await using var endpoint = new HealthEndpoint(state, Loopback(port));
        await endpoint.StartAsync(default);

        var (status, body) = await GetAsync(port, "/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("unavailable", body.GetProperty("status").GetString());
        Assert.Equal(["device", "model"], body.GetProperty("checks").EnumerateArray().Select(c => c.GetProperty("name").GetString()));

        // Liveness does not wait for the model: a silo that is loading 14 GB of weights is alive.
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(port, "/healthz")).Status);

        state.MarkReady(ReadinessGates.Device, "cuda:0 (NVIDIA H100)");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await GetAsync(port, "/readyz")).Status);
        state.MarkReady(ReadinessGates.Model, "llava-1.5-7b-hf bfloat16");
        (status, body) = await GetAsync(port, "/readyz");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("ok", body.GetProperty("status").GetString());
        Assert.Contains(body.GetProperty("checks").EnumerateArray(), c => c.GetProperty("detail").GetString() == "llava-1.5-7b-hf bfloat16");

        // A silo can fall back to not ready (e.g. the device failed) with the reason in the body.
        state.MarkNotReady(ReadinessGates.Device, "CUDA error: device lost");
        (status, body) = await GetAsync(port, "/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains(body.GetProperty("checks").EnumerateArray(), c => c.GetProperty("detail").GetString() == "CUDA error: device lost");
    }

    [Fact]
    public async Task Checks_are_evaluated_at_each_probe_and_a_failing_check_fails_the_probe()
    {
        var state = new ReadinessState();
        int loaded = 0;
        state.AddCheck("model", () => (loaded == 2, $"{loaded}/2 runner threads loaded"));
        bool wedged = false;
        state.AddLivenessCheck("worker", () => wedged ? (false, "no lease loop ran for 10 min") : (true, null));
        state.AddCheck("throws", () => loaded < 2 ? throw new InvalidOperationException("boom") : (true, null));
        int port = FreePort();
        await using var endpoint = new HealthEndpoint(state, Loopback(port));
        await endpoint.StartAsync(default);

        var (status, body) = await GetAsync(port, "/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains(body.GetProperty("checks").EnumerateArray(), c => c.GetProperty("detail").GetString() == "check failed: boom");
        loaded = 2;
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(port, "/readyz")).Status);

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(port, "/healthz")).Status);
        wedged = true;
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await GetAsync(port, "/healthz")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await GetAsync(port, "/metrics")).Status);
    }

    [Fact]
    public async Task In_a_host_the_endpoint_follows_the_host_lifetime()
    {
        int port = FreePort();
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Telemetry:HealthPort"] = port.ToString(),
            ["Telemetry:HealthBind"] = "127.0.0.1",
            ["Telemetry:ReadinessGates"] = "model",
        }).Build();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddLlavaMechTelemetry(config);
        using var host = builder.Build();
        var state = host.Services.GetRequiredService<ReadinessState>();
        Assert.False(state.IsReady);

        await host.StartAsync();
        var (status, body) = await GetAsync(port, "/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        var checks = body.GetProperty("checks").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c.GetProperty("ok").GetBoolean());
        Assert.Equal(new Dictionary<string, bool> { ["host"] = true, ["model"] = false }, checks);

        state.MarkReady(ReadinessGates.Model);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(port, "/readyz")).Status);

        await host.StopAsync();
        Assert.False(state.IsReady);
        Assert.Contains(state.Readiness().Entries, e => e is { Name: "host", Ok: false, Detail: "stopping" });
        await Assert.ThrowsAsync<HttpRequestException>(() => Http.GetAsync($"http://127.0.0.1:{port}/healthz"));
    }

    [Fact]
    public async Task A_port_in_use_stops_the_start_with_a_clear_message()
    {
        var busy = new TcpListener(IPAddress.Loopback, 0);
        busy.Start();
        try
        {
            int port = ((IPEndPoint)busy.LocalEndpoint).Port;
            await using var endpoint = new HealthEndpoint(new ReadinessState(), Loopback(port));
            var e = await Assert.ThrowsAsync<InvalidOperationException>(() => endpoint.StartAsync(default));
            Assert.Contains("Telemetry:HealthPort", e.Message);
        }
        finally { busy.Stop(); }
    }

    [Fact]
    public async Task Port_zero_means_no_endpoint()
    {
        var services = new ServiceCollection().AddLogging();
        services.AddLlavaMechTelemetry(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Telemetry:HealthPort"] = "0" }).Build());
        await using var sp = services.BuildServiceProvider();
        Assert.Null(sp.GetService<HealthEndpoint>());
        Assert.NotNull(sp.GetService<ReadinessState>());
    }
}
