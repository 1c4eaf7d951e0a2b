using LlavaMech.Datasets.Manifest;
using System.Diagnostics;
using System.Threading.Channels;
using LlavaMech.Model;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlavaMech.Runtime;

/// <summary>Settings of one <see cref="DeviceRunner"/>.</summary>
public sealed record DeviceRunnerOptions
{
    /// <summary>cpu, cuda, cuda:N (resolved on the runner's threads).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Runner threads, each with its own warm copy of the model (TorchSharp dispose scopes are per thread).</summary>
    public int Threads { get; init; } = 1;

    /// <summary>Requests (single examples or batches) queued or running at most (the channel's bound); 0 = 2 per thread. Writers wait when it is full.</summary>
    public int Capacity { get; init; }

    /// <summary>A model spec to load at start so the first shard does not pay for it (null: load on the first request).</summary>
    public ModelSpec? Preload { get; init; }

    /// <summary>
    /// libtorch intra-op threads of each runner thread (0: leave libtorch's setting). Set on the runner thread itself:
    /// OpenMP's and MKL's thread counts are per calling thread, so a process-wide set_num_threads from another thread
    /// does not reliably reach the matrix products of a new thread.
    /// </summary>
    public int TorchThreads { get; init; }

    public int EffectiveCapacity => Capacity > 0 ? Capacity : 2 * Math.Max(1, Threads);
}

/// <summary>Counters of a runner, for logs and status.</summary>
public sealed record DeviceRunnerStats(string Device, int Threads, long Examples, long Rejected, long Failed, double BusyMs, int Queued, int ModelLoads);

/// <summary>Where a runner stands, for readiness probes (<see cref="DeviceRunner.Health"/>).</summary>
public enum DeviceRunnerState
{
    /// <summary>Not started, or some threads have not checked their device yet.</summary>
    Starting,

    /// <summary>Every thread checked its device and the runner takes work.</summary>
    Ready,

    /// <summary>The device check failed, a runner thread died, or the last examples all failed (device errors, out of memory).</summary>
    Faulted,

    /// <summary>Stopping or stopped.</summary>
    Stopped,
}

/// <summary>A runner's state and the reason a probe shows.</summary>
public sealed record DeviceRunnerHealth(DeviceRunnerState State, string Detail);

/// <summary>
/// The compute of one device: dedicated threads that each own a model (loaded once and kept warm; reloaded only when a
/// request names another checkpoint or dtype), fed by a bounded <see cref="Channel{T}"/> of requests, answering through
/// <see cref="TaskCompletionSource{T}"/>s whose continuations run asynchronously, so callers (grains, hosted
/// services) never run TorchSharp code on their own scheduler, and only managed rows come back. A hosted service:
/// start it with the host (or call <see cref="StartAsync"/>), stop it to drain and free the models.
/// </summary>
public sealed class DeviceRunner : IHostedService, IAsyncDisposable
{
    private readonly Channel<Request> _channel;
    private readonly Thread[] _threads;
    private readonly CancellationTokenSource _stop = new();
    private readonly Action<string>? _log;
    private readonly ILogger? _logger;
    private long _examples, _rejected, _failed, _busyTicks;
    private int _modelLoads, _started, _stopped;
    private int _threadsReady, _threadsPreloaded, _threadsAlive, _running, _consecutiveFailures;
    private volatile string? _deviceError, _threadFault, _preloadError, _lastFailure;

    /// <summary>Examples failing in a row (exceptions, not rejections) after which the runner counts as faulted, until one succeeds.</summary>
    public const int FaultAfterFailures = 3;

    /// <summary>One work item of the channel: one example, or a batch (<see cref="AnalyzeBatchAsync"/>) run as one item.</summary>
    private sealed record Request(ModelSpec Model, IReadOnlyList<ManifestExample> Works, AnalysisSettings Settings, TaskCompletionSource<ExampleOutcome[]> Result, CancellationToken Cancel);

    /// <param name="log">progress messages (model loads, device checks).</param>
    /// <param name="logger">warnings of the analyzer: rejected examples (non-finite statistics, failed analyses) and batched passes that fell back to one example at a time.</param>
    public DeviceRunner(DeviceRunnerOptions options, Action<string>? log = null, ILogger? logger = null)
    {
        _logger = logger;
        Options = options ?? throw new ArgumentNullException(nameof(options));
        if (options.Threads < 1) throw new ArgumentException($"a device runner needs at least one thread, got {options.Threads}");
        _log = log;
        _channel = Channel.CreateBounded<Request>(new BoundedChannelOptions(options.EffectiveCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = false,
            SingleWriter = false,
        });
        _threads = Enumerable.Range(0, options.Threads)
            .Select(i => new Thread(() => Loop(i)) { IsBackground = true, Name = $"llavamech-{options.Device}-{i}" })
            .ToArray();
    }

    public DeviceRunnerOptions Options { get; }
    public string Device => Options.Device;

    public DeviceRunnerStats Stats => new(Options.Device, _threads.Length, Interlocked.Read(ref _examples), Interlocked.Read(ref _rejected),
        Interlocked.Read(ref _failed), TimeSpan.FromTicks(Interlocked.Read(ref _busyTicks)).TotalMilliseconds, _channel.Reader.Count, _modelLoads);

    /// <summary>Runner threads.</summary>
    public int ThreadCount => _threads.Length;

    /// <summary>Requests (single examples or batches) queued or running right now.</summary>
    public int Pending => _channel.Reader.Count + Volatile.Read(ref _running);

    /// <summary>Threads that loaded the <see cref="DeviceRunnerOptions.Preload"/> model when they started (0 without one).</summary>
    public int ThreadsPreloaded => Volatile.Read(ref _threadsPreloaded);

    /// <summary>Why preloading failed on some thread (null: it did not fail, or there is no preload).</summary>
    public string? PreloadError => _preloadError;

    /// <summary>
    /// Ready once every thread has resolved its device (CUDA present, the index exists, a tensor can be placed there);
    /// faulted when that check failed, a thread died, or <see cref="FaultAfterFailures"/> examples in a row threw
    /// (back to ready with the next success).
    /// </summary>
    public DeviceRunnerHealth Health
    {
        get
        {
            if (Volatile.Read(ref _stopped) == 1) return new(DeviceRunnerState.Stopped, $"{Device}: stopped");
            if (_deviceError is { } de) return new(DeviceRunnerState.Faulted, $"{Device}: device check failed: {de}");
            if (_threadFault is { } tf) return new(DeviceRunnerState.Faulted, $"{Device}: a runner thread died: {tf}");
            int failures = Volatile.Read(ref _consecutiveFailures);
            if (failures >= FaultAfterFailures) return new(DeviceRunnerState.Faulted, $"{Device}: the last {failures} examples failed: {_lastFailure}");
            int ready = Volatile.Read(ref _threadsReady);
            if (Volatile.Read(ref _started) == 0 || ready < _threads.Length)
                return new(DeviceRunnerState.Starting, $"{Device}: {ready} of {_threads.Length} runner threads checked their device");
            return new(DeviceRunnerState.Ready, $"{Device}: {_threads.Length} runner thread(s) ready");
        }
    }

    /// <summary>Raised (on a runner thread, or the caller of start/stop) when <see cref="Health"/> or the preload state may have changed.</summary>
    public event Action<DeviceRunner>? HealthChanged;

    private void Changed()
    {
        var handlers = HealthChanged;
        if (handlers is null) return;
        foreach (Action<DeviceRunner> h in handlers.GetInvocationList())
        {
            try { h(this); }
            catch (Exception e) { _log?.Invoke($"device {Device}: health listener failed: {e.Message}"); }
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            Volatile.Write(ref _threadsAlive, _threads.Length);
            foreach (var t in _threads) t.Start();
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// Queues one example (waiting while the channel is full) and completes with its outcome. Throws what the pass
    /// threw for failures that are not the example's (model load, device errors), <see cref="OperationCanceledException"/>
    /// when <paramref name="ct"/> fires before the example ran, <see cref="ObjectDisposedException"/> after stop.
    /// </summary>
    public async Task<ExampleOutcome> AnalyzeAsync(ModelSpec model, ManifestExample work, AnalysisSettings settings, CancellationToken ct = default) =>
        (await AnalyzeBatchAsync(model, [work], settings, ct).ConfigureAwait(false))[0];

    /// <summary>
    /// Queues several examples as ONE work item (one slot of the bounded channel, run by one runner thread with
    /// <see cref="PipelineAnalyzer.RunBatch"/>: equal-length examples share a hooked pass, up to
    /// <see cref="AnalysisSettings.BatchSize"/> at a time) and completes with their outcomes in order. Failures as
    /// <see cref="AnalyzeAsync"/>.
    /// </summary>
    public async Task<ExampleOutcome[]> AnalyzeBatchAsync(ModelSpec model, IReadOnlyList<ManifestExample> works, AnalysisSettings settings, CancellationToken ct = default)
    {
        if (Volatile.Read(ref _started) == 0) throw new InvalidOperationException($"device runner {Device} is not started");
        if (works.Count == 0) return [];
        var tcs = new TaskCompletionSource<ExampleOutcome[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        var request = new Request(model, works, settings, tcs, ct);
        try
        {
            await _channel.Writer.WriteAsync(request, ct).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException($"device runner {Device}", "the device runner is stopping");
        }
        using (ct.Register(() => tcs.TrySetCanceled(ct)))
            return await tcs.Task.ConfigureAwait(false);
    }

    private void Loop(int index)
    {
        LoadedModel? model = null;
        PipelineAnalyzer? analyzer = null;
        ModelSpec? loaded = null;
        var reader = _channel.Reader;
        try
        {
            if (Options.TorchThreads > 0) TorchSharp.torch.set_num_threads(Options.TorchThreads);
            try
            {
                CheckDevice();
                Interlocked.Increment(ref _threadsReady);
            }
            catch (Exception e)
            {
                // Requests still run (and fail with the same error): the state is for the readiness probe.
                _deviceError = e.Message;
                _log?.Invoke($"device {Device} thread {index}: device check failed: {e.Message}");
            }
            Changed();
            if (Options.Preload is { } pre)
            {
                try
                {
                    (model, analyzer, loaded) = Load(pre, index);
                    Interlocked.Increment(ref _threadsPreloaded);
                }
                catch (Exception e)
                {
                    _preloadError = e.Message;
                    _log?.Invoke($"device {Device} thread {index}: preloading {pre.Dir} failed: {e.Message}");
                }
                Changed();
            }
            while (!_stop.IsCancellationRequested)
            {
                if (!reader.TryRead(out var request))
                {
                    bool more;
                    try { more = reader.WaitToReadAsync(_stop.Token).AsTask().GetAwaiter().GetResult(); }
                    catch (OperationCanceledException) { break; }
                    if (!more) break;
                    continue;
                }
                if (request.Cancel.IsCancellationRequested || request.Result.Task.IsCompleted)
                {
                    request.Result.TrySetCanceled(request.Cancel);
                    continue;
                }
                long start = Stopwatch.GetTimestamp();
                Interlocked.Increment(ref _running);
                try
                {
                    if (loaded != request.Model || analyzer is null)
                    {
                        analyzer?.Dispose();
                        model?.Dispose();
                        (model, analyzer, loaded) = (null, null, null);
                        (model, analyzer, loaded) = Load(request.Model, index);
                    }
                    var outcomes = request.Works.Count == 1
                        ? [analyzer.Run(request.Works[0], request.Settings)]
                        : analyzer.RunBatch(request.Works, request.Settings);
                    Interlocked.Add(ref _examples, outcomes.Length);
                    Interlocked.Add(ref _rejected, outcomes.Count(o => o.Rejected));
                    if (Interlocked.Exchange(ref _consecutiveFailures, 0) >= FaultAfterFailures) Changed();
                    request.Result.TrySetResult(outcomes);
                }
                catch (Exception e)
                {
                    Interlocked.Increment(ref _failed);
                    _lastFailure = e.Message;
                    if (Interlocked.Increment(ref _consecutiveFailures) == FaultAfterFailures) Changed();
                    request.Result.TrySetException(e);
                }
                finally
                {
                    Interlocked.Decrement(ref _running);
                    Interlocked.Add(ref _busyTicks, Stopwatch.GetElapsedTime(start).Ticks);
                }
            }
        }
        catch (Exception e)
        {
            // Nothing in the loop is expected to throw; should it, the runner reports it instead of taking the process down.
            if (!_stop.IsCancellationRequested)
            {
                _threadFault = $"thread {index}: {e.Message}";
                _log?.Invoke($"device {Device} thread {index} died: {e}");
            }
        }
        finally
        {
            analyzer?.Dispose();
            model?.Dispose();
            // The last thread out closes the channel, so that writers fail instead of waiting for a reader that is gone.
            if (Interlocked.Decrement(ref _threadsAlive) == 0)
                _channel.Writer.TryComplete();
            while (reader.TryRead(out var left))
                left.Result.TrySetException(new ObjectDisposedException($"device runner {Device}", "the device runner stopped"));
            if (_threadFault is not null) Changed();
        }
    }

    /// <summary>What a runner thread checks before it takes work: the device resolves, exists, and holds a tensor.</summary>
    private void CheckDevice()
    {
        var device = LlavaMech.Model.Devices.TorchRuntime.ResolveDevice(Options.Device);
        if (device.type == TorchSharp.DeviceType.CUDA)
        {
            int count = TorchSharp.torch.cuda.device_count();
            if (device.index >= count)
                throw new InvalidOperationException($"device '{Device}' does not exist: CUDA sees {count} device(s)");
        }
        using var probe = TorchSharp.torch.zeros(1, device: device);
    }

    private (LoadedModel, PipelineAnalyzer, ModelSpec) Load(ModelSpec spec, int index)
    {
        var sw = Stopwatch.StartNew();
        var model = LoadedModel.Load(spec.Dir, new ModelLoadOptions(Options.Device, spec.DType));
        try
        {
            var analyzer = new PipelineAnalyzer(model, _logger);
            Interlocked.Increment(ref _modelLoads);
            _log?.Invoke($"device {Device} thread {index}: loaded {spec.Dir} ({model.DType}) in {sw.Elapsed.TotalSeconds:0.0} s");
            return (model, analyzer, spec);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Closes the channel, fails what is still queued, and waits for the threads to finish their current example.</summary>
    public Task StopAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1) return Task.CompletedTask;
        _channel.Writer.TryComplete();
        _stop.Cancel();
        Changed();
        if (Volatile.Read(ref _started) == 0) return Task.CompletedTask;
        return Task.Run(() =>
        {
            foreach (var t in _threads)
                if (!cancellationToken.IsCancellationRequested) t.Join(TimeSpan.FromSeconds(30));
        }, CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None).ConfigureAwait(false);
        _stop.Dispose();
    }
}
