using LlavaMech.Datasets.Manifest;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using LlavaMech.Runtime;
using LlavaMech.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// The telemetry of a silo as it is deployed: the host of <c>./llavamech silo</c> and <c>run</c>
/// (<see cref="PipelineHost.BuildSilo"/>) serving <c>/healthz</c> and <c>/readyz</c>, counting a real job's examples
/// and shards and tracing its shards; the silo process with a device it cannot use (alive, not ready); and a device
/// runner's health going faulted and back.
/// </summary>
public class SiloTelemetryTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Silo_host_serves_health_and_readiness_and_its_metrics_and_spans_count_a_jobs_examples_and_shards()
    {
        Reference.UseOneTorchThread();
        var total = Stopwatch.StartNew();
        int healthPort = PipelineHost.FreePort();
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Telemetry:HealthPort"] = healthPort.ToString(CultureInfo.InvariantCulture),
            ["Telemetry:HealthBind"] = "127.0.0.1",
        }).Build();
        var cluster = new ClusterSettings
        {
            SiloPort = PipelineHost.FreePort(), GatewayPort = PipelineHost.FreePort(), ClusterId = "telemetry-" + Guid.NewGuid().ToString("N")[..8],
            ResponseTimeout = TimeSpan.FromSeconds(30),
        };
        var pipeline = new PipelineSiloOptions { Devices = ["cpu"], PollInterval = TimeSpan.FromMilliseconds(100) };
        using var host = PipelineHost.BuildSilo(pipeline, cluster, LogLevel.Warning, config);

        // Before the host starts: not ready, the device gate waits for the runner.
        var readiness = host.Services.GetRequiredService<ReadinessState>();
        var before = readiness.Readiness();
        Assert.False(before.Ok);
        Assert.Contains(before.Entries, e => e.Name == ReadinessGates.Device && !e.Ok);

        var metrics = host.Services.GetRequiredService<PipelineMetrics>();
        using var recorder = new MetricRecorder(metrics.Meter);
        string jobId = "telemetry-" + Guid.NewGuid().ToString("N")[..8];
        var spans = new ConcurrentQueue<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = s => s.Name == TelemetryNames.ActivitySource,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (a.OperationName == "shard" && a.GetTagItem(TelemetryNames.JobIdAttribute) as string == jobId) spans.Enqueue(a);
            },
        };
        ActivitySource.AddActivityListener(activities);

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{healthPort}/"), Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            // Probe from the moment the host starts: the endpoint is up before the silo, and answers 503 until the
            // host has started and the runner has checked its device, then 200.
            var starting = host.StartAsync();
            var answers = new List<(HttpStatusCode Status, JsonObject Body)>();
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    var r = await Get(http, "readyz");
                    if (answers.Count == 0 || answers[^1].Status != r.Status) answers.Add(r);
                    if (r.Status == HttpStatusCode.OK && starting.IsCompleted) break;
                }
                catch (HttpRequestException) { }   // not listening yet
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "/readyz did not answer 200 within 60 s");
                await Task.Delay(25);
            }
            await starting;
            output.WriteLine($"{total.Elapsed.TotalSeconds:0.0} s: /readyz answered {string.Join(" then ", answers.Select(a => (int)a.Status))}");
            foreach (var (status, body) in answers.Where(a => a.Status != HttpStatusCode.OK))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
                Assert.Equal("unavailable", (string?)body["status"]);
                Assert.Contains(body["checks"]!.AsArray(), c => !(bool)c!["ok"]!);   // some gate says why
            }
            var ready = answers[^1].Body;
            Assert.Equal("ok", (string?)ready["status"]);
            // No preloaded model: no model gate.
            Assert.Equal(new[] { "device", "host" }, ready["checks"]!.AsArray().Select(c => (string)c!["name"]!).ToArray());
            Assert.All(ready["checks"]!.AsArray(), c => Assert.True((bool)c!["ok"]!));
            Assert.Contains("cpu: 1 runner thread(s) ready", Check(ready, "device"));
            var (liveStatus, live) = await Get(http, "healthz");
            Assert.Equal(HttpStatusCode.OK, liveStatus);
            Assert.Equal("ok", (string?)live["status"]);

            // A real job over the bundled dataset: 128 examples in 8 shards of 16.
            using var tmp = new TempDir();
            string manifest = Path.Combine(TestData.Bundled, "manifest.jsonl");
            int examples = File.ReadLines(manifest).Count(l => l.Trim().Length > 0);
            var spec = new JobSpec(jobId, TestData.TinyModel, manifest, tmp.Sub("out"), new JobOptions { ShardSize = 16, Analysis = new AnalysisSettings { TopNeurons = 0 } });
            var client = new PipelineClient(host.Services.GetRequiredService<IGrainFactory>()) { PollInterval = TimeSpan.FromMilliseconds(200) };
            long maxLeases = 0;
            var clock = Stopwatch.StartNew();
            var final = await client.RunAsync(spec, _ =>
            {
                recorder.Collect();
                maxLeases = Math.Max(maxLeases, (long)recorder.Last(TelemetryNames.ActiveLeases));
            });
            output.WriteLine($"{total.Elapsed.TotalSeconds:0.0} s: job {final.State} in {clock.Elapsed.TotalSeconds:0.0} s: {final.ShardsDone}/{final.ShardsTotal} shards, " +
                             $"{final.ExamplesDone} examples, {final.Rejects} rejects");
            Assert.True(final.State == JobState.Completed, $"{final.State}: {final.Error}");
            Assert.Equal(128, examples);
            Assert.Equal(examples, final.ExamplesTotal);
            Assert.Equal(8, final.ShardsTotal);

            // Counters: every example analysed once, on cpu; rejects as the job counts them; every shard committed once.
            double ok = recorder.Sum(TelemetryNames.ExamplesProcessed, ("outcome", "ok"), ("device", "cpu"));
            double rejected = recorder.Sum(TelemetryNames.ExamplesProcessed, ("outcome", "rejected"), ("device", "cpu"));
            output.WriteLine($"metrics: {ok} ok + {rejected} rejected examples, {recorder.Sum(TelemetryNames.Shards)} shards, max leases {maxLeases}");
            Assert.Equal(examples, ok + rejected);
            Assert.Equal(examples, recorder.Sum(TelemetryNames.ExamplesProcessed));
            Assert.Equal(final.Rejects, rejected);
            Assert.Equal(examples - final.Rejects, ok);
            Assert.Equal(8, recorder.Sum(TelemetryNames.Shards, ("outcome", "committed"), ("device", "cpu")));
            Assert.Equal(8, recorder.Sum(TelemetryNames.Shards));
            Assert.Equal(0, recorder.Sum(TelemetryNames.Failures));
            // Histograms: one shard duration per shard, one analysis time per example, all positive and below the job's time.
            var shardTimes = recorder.Values(TelemetryNames.ShardDuration);
            Assert.Equal(8, shardTimes.Count);
            Assert.All(shardTimes, s => Assert.InRange(s, 1e-6, clock.Elapsed.TotalSeconds));
            var exampleTimes = recorder.Values(TelemetryNames.ExampleDuration);
            Assert.Equal(examples, exampleTimes.Count);
            Assert.All(exampleTimes, s => Assert.InRange(s, 1e-6, clock.Elapsed.TotalSeconds));
            Assert.True(exampleTimes.Sum() <= shardTimes.Sum() + 1e-6, "examples ran inside their shards");

            // Gauges: a lease was held while the job ran; none and no queued example once it is over.
            Assert.True(maxLeases >= 1, $"llavamech.leases.active never showed a lease (max {maxLeases})");
            var settle = Stopwatch.StartNew();
            do
            {
                recorder.Collect();
                if (recorder.Last(TelemetryNames.ActiveLeases) == 0) break;
                await Task.Delay(50);
            } while (settle.Elapsed < TimeSpan.FromSeconds(10));
            Assert.Equal(0, recorder.Last(TelemetryNames.ActiveLeases));
            Assert.Equal(0, recorder.Last(TelemetryNames.QueueDepth, ("device", "cpu")));

            // Spans: one per shard, tagged with the job, the shard index and its examples.
            var shards = spans.ToList();
            Assert.Equal(8, shards.Count);
            Assert.Equal(Enumerable.Range(0, 8), shards.Select(a => (int)a.GetTagItem(TelemetryNames.ShardAttribute)!).Order());
            Assert.All(shards, a => Assert.Equal(16, (int)a.GetTagItem(TelemetryNames.ExamplesAttribute)!));
            Assert.All(shards, a => Assert.Equal("committed", a.GetTagItem(TelemetryNames.OutcomeAttribute)));
            Assert.All(shards, a => Assert.Equal("cpu", a.GetTagItem(TelemetryNames.DeviceAttribute)));
            Assert.All(shards, a => Assert.Equal(ActivityStatusCode.Ok, a.Status));

            // Still alive and ready after the work.
            Assert.Equal(HttpStatusCode.OK, (await Get(http, "readyz")).Status);
            Assert.Equal(HttpStatusCode.OK, (await Get(http, "healthz")).Status);
        }
        finally
        {
            await host.StopAsync(TimeSpan.FromSeconds(30));
        }
        output.WriteLine($"{total.Elapsed.TotalSeconds:0.0} s in all");
    }

    [Fact]
    public async Task Silo_process_with_a_device_it_cannot_use_is_alive_but_not_ready()
    {
        // cuda:7 fails the runner's device check everywhere: no CUDA in the CPU build, and no eighth GPU where there is CUDA.
        int healthPort = PipelineHost.FreePort(), siloPort = PipelineHost.FreePort(), gatewayPort = PipelineHost.FreePort();
        await using var silo = ChildProcess.Start("silo",
            ["silo", "--devices", "cuda:7", "--silo-port", $"{siloPort}", "--gateway-port", $"{gatewayPort}", "--primary-port", $"{siloPort}",
             "--cluster-id", "unready-" + Guid.NewGuid().ToString("N")[..8], "--parent-pid", $"{Environment.ProcessId}"],
            new Dictionary<string, string>
            {
                // As the Kubernetes manifests configure it (k8s/base/config.env), but on a free port and loopback only.
                ["LLAVAMECH_Telemetry__HealthPort"] = $"{healthPort}",
                ["LLAVAMECH_Telemetry__HealthBind"] = "127.0.0.1",
            });
        await silo.WaitForOutputAsync($"/healthz /readyz on port {healthPort}", TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{healthPort}/"), Timeout = TimeSpan.FromSeconds(10) };
        var clock = Stopwatch.StartNew();
        (HttpStatusCode Status, JsonObject Body) ready = default;
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            try
            {
                ready = await Get(http, "readyz");
                // Wait until the host has started and the runner has tried its device: then only the device gate fails.
                if (Check(ready.Body, "host") == "started" && Check(ready.Body, "device")?.Contains("device check failed") == true) break;
            }
            catch (HttpRequestException) { }
            Assert.False(silo.HasExited, silo.Output);
            await Task.Delay(100);
        }
        output.WriteLine($"/readyz {(int)ready.Status}: {ready.Body?.ToJsonString()}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.Status);
        Assert.Equal("unavailable", (string?)ready.Body!["status"]);
        var checks = ready.Body["checks"]!.AsArray();
        Assert.True((bool)checks.Single(c => (string)c!["name"]! == "host")!["ok"]!);
        var device = checks.Single(c => (string)c!["name"]! == "device")!;
        Assert.False((bool)device["ok"]!);
        Assert.Contains("cuda:7", (string)device["detail"]!);
        var (liveStatus, live) = await Get(http, "healthz");
        Assert.Equal(HttpStatusCode.OK, liveStatus);   // alive: a restart would not give it the device
        Assert.Equal("ok", (string?)live["status"]);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("metrics")).StatusCode);
    }

    [Fact]
    public async Task Device_runner_health_is_ready_after_its_device_check_faulted_after_failures_in_a_row_and_ready_again_after_a_success()
    {
        Reference.UseOneTorchThread();
        await using var runner = new DeviceRunner(new DeviceRunnerOptions { Device = "cpu", Threads = 1 });
        int events = 0;
        runner.HealthChanged += _ => Interlocked.Increment(ref events);
        Assert.Equal(DeviceRunnerState.Starting, runner.Health.State);
        await runner.StartAsync(default);
        await WaitFor(() => runner.Health.State == DeviceRunnerState.Ready);
        Assert.True(events >= 1);

        var o = JsonNode.Parse(File.ReadLines(Path.Combine(TestData.Bundled, "manifest.jsonl")).First(l => l.Contains("\"tqa\"")))!.AsObject();
        var work = new ManifestExample("e0", (string)o["task"]!, null, null, (string)o["prompt"]!, (string?)o["expected"], null, "{}", 1) { RawLine = o.ToJsonString() };
        var missing = new ModelSpec(Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid().ToString("N")));
        for (int i = 1; i <= DeviceRunner.FaultAfterFailures; i++)
        {
            await Assert.ThrowsAnyAsync<Exception>(() => runner.AnalyzeAsync(missing, work, new AnalysisSettings()));
            var expected = i < DeviceRunner.FaultAfterFailures ? DeviceRunnerState.Ready : DeviceRunnerState.Faulted;
            Assert.Equal(expected, runner.Health.State);
        }
        Assert.Contains($"the last {DeviceRunner.FaultAfterFailures} examples failed", runner.Health.Detail);
        Assert.Equal(0, runner.Pending);

        var outcome = await runner.AnalyzeAsync(new ModelSpec(TestData.TinyModel), work, new AnalysisSettings { TopNeurons = 0 });
        Assert.False(outcome.Rejected, outcome.RejectReason);
        Assert.Equal(DeviceRunnerState.Ready, runner.Health.State);

        await runner.StopAsync(default);
        Assert.Equal(DeviceRunnerState.Stopped, runner.Health.State);
    }

    private static async Task WaitFor(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "condition not met within 30 s");
            await Task.Delay(10);
        }
    }

    private static async Task<(HttpStatusCode Status, JsonObject Body)> Get(HttpClient http, string path)
    {
        using var response = await http.GetAsync(path);
        string text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonNode.Parse(text)!.AsObject());
    }

    private static string? Check(JsonObject? body, string name) =>
        body?["checks"]?.AsArray().FirstOrDefault(c => (string?)c?["name"] == name)?["detail"]?.GetValue<string?>();

    /// <summary>Every measurement of one <see cref="Meter"/> instance (so other silos in this process do not count).</summary>
    private sealed class MetricRecorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentQueue<(string Name, double Value, Dictionary<string, string?> Tags)> _measurements = new();

        public MetricRecorder(Meter meter)
        {
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter, meter)) l.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
            _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
            _listener.Start();
        }

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var t = new Dictionary<string, string?>();
            foreach (var kv in tags) t[kv.Key] = kv.Value?.ToString();
            _measurements.Enqueue((instrument.Name, value, t));
        }

        /// <summary>Reads the observable gauges now.</summary>
        public void Collect() => _listener.RecordObservableInstruments();

        public List<double> Values(string name, params (string Key, string Value)[] where) =>
            _measurements.Where(m => m.Name == name && where.All(w => m.Tags.TryGetValue(w.Key, out var v) && v == w.Value)).Select(m => m.Value).ToList();

        public double Sum(string name, params (string Key, string Value)[] where) => Values(name, where).Sum();

        /// <summary>The latest value of a gauge (-1: never observed).</summary>
        public double Last(string name, params (string Key, string Value)[] where) => Values(name, where) is { Count: > 0 } v ? v[^1] : -1;

        public void Dispose() => _listener.Dispose();
    }
}
