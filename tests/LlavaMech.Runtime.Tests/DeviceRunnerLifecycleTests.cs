using System.Diagnostics;
using LlavaMech.Model.Tests;
using LlavaMech.Testing;

namespace LlavaMech.Runtime.Tests;

/// <summary>
/// A runner from construction to stop: refusal before start, preload, reuse of the warm model and reload when the
/// spec changes, a device that does not exist, cancellation, and refusal after stop. (Rows against the single-process
/// statistics and the fault/recovery cycle of its health are the pipeline tests'.)
/// </summary>
public class DeviceRunnerLifecycleTests
{
    private static ModelSpec Tiny(string dtype = "auto") => new(Fixtures.Model("tiny-llava-mha"), dtype);

    [Fact]
    public void A_runner_needs_a_thread()
    {
        var e = Assert.Throws<ArgumentException>(() => new DeviceRunner(new DeviceRunnerOptions { Threads = 0 }));
        Assert.Contains("at least one thread, got 0", e.Message);
        Assert.Equal(4, new DeviceRunnerOptions { Threads = 2 }.EffectiveCapacity);
        Assert.Equal(5, new DeviceRunnerOptions { Threads = 2, Capacity = 5 }.EffectiveCapacity);
    }

    [Fact]
    public async Task Preloaded_model_is_reused_reloaded_on_a_new_spec_and_requests_after_stop_are_refused()
    {
        using var g = new Golden("tiny-llava-mha", "llava_text_sky");
        var work = PipelineAnalyzerTests.Work(g);
        var settings = new AnalysisSettings { TopNeurons = 0 };
        var runner = new DeviceRunner(new DeviceRunnerOptions { Device = "cpu", Threads = 1, Preload = Tiny() });
        try
        {
            Assert.Equal(DeviceRunnerState.Starting, runner.Health.State);
            var notStarted = await Assert.ThrowsAsync<InvalidOperationException>(() => runner.AnalyzeAsync(Tiny(), work, settings));
            Assert.Contains("device runner cpu is not started", notStarted.Message);

            await runner.StartAsync(default);
            await WaitFor(() => runner.ThreadsPreloaded == 1);
            Assert.Equal(DeviceRunnerState.Ready, runner.Health.State);
            Assert.Null(runner.PreloadError);
            Assert.Equal(1, runner.Stats.ModelLoads);

            // The preloaded model answers: the reference target, no second load.
            var first = await runner.AnalyzeAsync(Tiny(), work, settings);
            Assert.Equal(g.TargetId, first.Rows!.Example.TargetId);
            var again = await runner.AnalyzeBatchAsync(Tiny(), [work, work with { Id = "twice" }], settings);
            Assert.Equal(2, again.Length);
            // The two share the image, so the second runs after their shared prefix: the same number to float rounding.
            Assert.Equal(first.Rows.Example.TargetProb, again[1].Rows!.Example.TargetProb, 1e-6);
            Assert.Equal(1, runner.Stats.ModelLoads);
            Assert.Empty(await runner.AnalyzeBatchAsync(Tiny(), [], settings));

            // Another spec (explicit float32) is another model: loaded once, then kept.
            var f32 = await runner.AnalyzeAsync(Tiny("float32"), work, settings);
            Assert.Equal(first.Rows.Example.TargetProb, f32.Rows!.Example.TargetProb, 1e-9);
            Assert.Equal(2, runner.Stats.ModelLoads);

            // A request cancelled before it runs completes as cancelled.
            using var cancelled = new CancellationTokenSource();
            cancelled.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => runner.AnalyzeAsync(Tiny(), work, settings, cancelled.Token));

            var stats = runner.Stats;
            Assert.Equal(4, stats.Examples);
            Assert.Equal(0, stats.Rejected);
            Assert.Equal(0, stats.Failed);
            Assert.True(stats.BusyMs > 0);
            Assert.Equal(0, runner.Pending);

            await runner.StopAsync(default);
            Assert.Equal(DeviceRunnerState.Stopped, runner.Health.State);
            var stopped = await Assert.ThrowsAsync<ObjectDisposedException>(() => runner.AnalyzeAsync(Tiny(), work, settings));
            Assert.Contains("stopping", stopped.Message);
        }
        finally
        {
            await runner.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_preload_that_fails_is_reported_and_the_runner_still_serves_other_models()
    {
        string missing = Path.Combine(Path.GetTempPath(), "llavamech-no-model-" + Guid.NewGuid().ToString("N"));
        await using var runner = new DeviceRunner(new DeviceRunnerOptions { Device = "cpu", Threads = 1, Preload = new ModelSpec(missing) });
        await runner.StartAsync(default);
        await WaitFor(() => runner.PreloadError is not null);
        Assert.Contains(missing, runner.PreloadError);
        Assert.Equal(0, runner.ThreadsPreloaded);
        Assert.Equal(0, runner.Stats.ModelLoads);

        using var g = new Golden("tiny-llava-mha", "llava_text_banana");
        var outcome = await runner.AnalyzeAsync(Tiny(), PipelineAnalyzerTests.Work(g), new AnalysisSettings { TopNeurons = 0 });
        Assert.Equal(g.TargetId, outcome.Rows!.Example.TargetId);
        Assert.Equal(1, runner.Stats.ModelLoads);
    }

    [Fact]
    public async Task A_device_that_cannot_be_resolved_faults_the_runner_and_fails_its_requests_with_the_reason()
    {
        await using var runner = new DeviceRunner(new DeviceRunnerOptions { Device = "tpu:0", Threads = 1 });
        await runner.StartAsync(default);
        await WaitFor(() => runner.Health.State == DeviceRunnerState.Faulted);
        Assert.Contains("tpu:0: device check failed: unknown device 'tpu:0'", runner.Health.Detail);

        using var g = new Golden("tiny-llava-mha", "llava_text_sky");
        var e = await Assert.ThrowsAnyAsync<Exception>(() => runner.AnalyzeAsync(Tiny(), PipelineAnalyzerTests.Work(g), new AnalysisSettings()));
        Assert.Contains("unknown device 'tpu:0'", e.Message);
        Assert.Equal(1, runner.Stats.Failed);
        Assert.Equal(0, runner.Stats.Examples);
    }

    private static async Task WaitFor(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "condition not met within 60 s");
            await Task.Delay(10);
        }
    }
}
