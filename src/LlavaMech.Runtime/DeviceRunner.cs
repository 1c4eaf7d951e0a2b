using System.Diagnostics;
using System.Threading.Channels;
using LlavaMech.Model;
using Microsoft.Extensions.Hosting;

namespace LlavaMech.Runtime;

/// <summary>Settings of one <see cref="DeviceRunner"/>.</summary>
public sealed record DeviceRunnerOptions
{
    /// <summary>cpu, cuda, cuda:N (resolved on the runner's threads).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Runner threads, each with its own warm copy of the model (TorchSharp dispose scopes are per thread).</summary>
    public int Threads { get; init; } = 1;

    /// <summary>Examples queued or running at most (the channel's bound); 0 = 2 per thread. Writers wait when it is full.</summary>
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
    private long _examples, _rejected, _failed, _busyTicks;
    private int _modelLoads, _started, _stopped;

    private sealed record Request(ModelSpec Model, ExampleWork Work, AnalysisSettings Settings, TaskCompletionSource<ExampleOutcome> Result, CancellationToken Cancel);

    public DeviceRunner(DeviceRunnerOptions options, Action<string>? log = null)
    {
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

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
            foreach (var t in _threads) t.Start();
        return Task.CompletedTask;
    }

    /// <summary>
    /// Queues one example (waiting while the channel is full) and completes with its outcome. Throws what the pass
    /// threw for failures that are not the example's (model load, device errors), <see cref="OperationCanceledException"/>
    /// when <paramref name="ct"/> fires before the example ran, <see cref="ObjectDisposedException"/> after stop.
    /// </summary>
    public async Task<ExampleOutcome> AnalyzeAsync(ModelSpec model, ExampleWork work, AnalysisSettings settings, CancellationToken ct = default)
    {
        if (Volatile.Read(ref _started) == 0) throw new InvalidOperationException($"device runner {Device} is not started");
        var tcs = new TaskCompletionSource<ExampleOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        var request = new Request(model, work, settings, tcs, ct);
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
            if (Options.Preload is { } pre)
            {
                try { (model, analyzer, loaded) = Load(pre, index); }
                catch (Exception e) { _log?.Invoke($"device {Device} thread {index}: preloading {pre.Dir} failed: {e.Message}"); }
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
                try
                {
                    if (loaded != request.Model || analyzer is null)
                    {
                        analyzer?.Dispose();
                        model?.Dispose();
                        (model, analyzer, loaded) = (null, null, null);
                        (model, analyzer, loaded) = Load(request.Model, index);
                    }
                    var outcome = analyzer.Run(request.Work, request.Settings);
                    Interlocked.Increment(ref _examples);
                    if (outcome.Rejected) Interlocked.Increment(ref _rejected);
                    request.Result.TrySetResult(outcome);
                }
                catch (Exception e)
                {
                    Interlocked.Increment(ref _failed);
                    request.Result.TrySetException(e);
                }
                finally
                {
                    Interlocked.Add(ref _busyTicks, Stopwatch.GetElapsedTime(start).Ticks);
                }
            }
        }
        finally
        {
            analyzer?.Dispose();
            model?.Dispose();
            while (reader.TryRead(out var left))
                left.Result.TrySetException(new ObjectDisposedException($"device runner {Device}", "the device runner stopped"));
        }
    }

    private (LoadedModel, PipelineAnalyzer, ModelSpec) Load(ModelSpec spec, int index)
    {
        var sw = Stopwatch.StartNew();
        var model = LoadedModel.Load(spec.Dir, new ModelLoadOptions(Options.Device, spec.DType));
        try
        {
            var analyzer = new PipelineAnalyzer(model);
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
