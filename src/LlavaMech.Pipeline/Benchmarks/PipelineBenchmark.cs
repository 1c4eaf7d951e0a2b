using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Model;
using LlavaMech.Reports;
using LlavaMech.Runtime;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Runtime;
using static TorchSharp.torch;

namespace LlavaMech.Pipeline.Benchmarks;

/// <summary>What <c>bench-pipeline</c> measures (paths absolute, options validated).</summary>
public sealed record PipelineBenchmarkSettings(string Model, string Dataset, int Examples, IReadOnlyList<int> ProcessCounts, int Warmup, int TorchThreads,
    int ShardSize, string Device, string DType, JobOptions Options, string? Out, bool SkipLoop, string? RandomWeights);

/// <summary>
/// examples/s of the pipeline (worker silo processes, leases, Parquet parts, commits) against a plain single-process
/// loop of <see cref="ExampleAnalyzer"/> over the same examples with the same options, and the resident memory of the
/// worker processes over a long run.
/// </summary>
public static class PipelineBenchmark
{
    /// <param name="CpuMsPerExample">CPU time (user + system, all threads) of the computing process(es) per example, from the start to the end of the examples.</param>
    public sealed record Measure(string Mode, int Processes, int Examples, double Seconds, double PerSecond, double? SteadyPerSecond, double? FinalizeSeconds,
        long[] RssAt10, long[] RssAt100, long[] PeakRss, double? Overhead, double CpuMsPerExample, double? SteadyCpuMsPerExample, double? CpuOverhead = null,
        double? JitMsPerExample = null, double? CpuOverheadWithoutJit = null);

    /// <summary>
    /// The plain loop (unless <see cref="PipelineBenchmarkSettings.SkipLoop"/>), then one pipeline run per process count,
    /// on the manifest's accepted examples repeated to <see cref="PipelineBenchmarkSettings.Examples"/>. Worker processes are
    /// started from <paramref name="selfStart"/> (this build's CLI, to which "silo ..." arguments are added); progress
    /// lines go to <paramref name="log"/>.
    /// </summary>
    public static List<Measure> Run(PipelineBenchmarkSettings s, Func<ProcessStartInfo> selfStart, Action<string> log)
    {
        string model = s.Model, dataset = s.Dataset, device = s.Device, dtype = s.DType;
        int n = s.Examples, threads = s.TorchThreads, shardSize = s.ShardSize, warmup = s.Warmup;
        var options = s.Options;
        var processCounts = s.ProcessCounts;
        string work = Path.Combine(Path.GetTempPath(), "llavamech-bench-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(work);
        var results = new List<Measure>();
        try
        {
            if (s.RandomWeights is { } shape) model = WidenedModel(model, shape, Path.Combine(work, "model"), log);
            string manifest = RepeatManifest(dataset, Path.Combine(work, "data"), n);
            var examples = ManifestReader.Read(manifest).Examples;
            string? warmManifest = warmup > 0 ? RepeatManifest(dataset, Path.Combine(work, "warmup"), warmup) : null;
            log($"bench-pipeline: {examples.Count} examples ({dataset} repeated), {model}, {device}, {threads} torch thread(s) per process, shards of {shardSize}");
            Measure? loop = null;
            if (!s.SkipLoop)
            {
                loop = RunLoop(model, device, dtype, threads, options, examples, warmup);
                results.Add(loop);
                log($"  plain loop: {loop.PerSecond:0.0} examples/s");
            }
            foreach (int p in processCounts)
            {
                string output = s.Out is { } o ? Path.Combine(Path.GetFullPath(o), $"p{p}") : Path.Combine(work, $"out-p{p}");
                var m = RunPipelineAsync(selfStart, model, manifest, warmManifest, output, device, dtype, threads, p, options, examples.Count).GetAwaiter().GetResult();
                if (loop is not null)
                    m = m with
                    {
                        Overhead = 1 - m.PerSecond / (p * loop.PerSecond),
                        CpuOverhead = (m.SteadyCpuMsPerExample ?? m.CpuMsPerExample) / (loop.SteadyCpuMsPerExample ?? loop.CpuMsPerExample) - 1,
                        CpuOverheadWithoutJit = m.SteadyCpuMsPerExample is { } ps && m.JitMsPerExample is { } pj && loop.SteadyCpuMsPerExample is { } ls && loop.JitMsPerExample is { } lj
                            ? (ps - pj) / (ls - lj) - 1 : null,
                    };
                results.Add(m);
                log($"  pipeline, {p} worker process(es): {m.PerSecond:0.0} examples/s");
            }
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
        return results;
    }

    /// <summary>
    /// A checkpoint folder with <paramref name="modelDir"/>'s tokenizer, image processor and image geometry, widened and
    /// deepened as <paramref name="shape"/> says (text=HxL[,vision=HxL]; 64-dim heads, Llama MLP 8/3 x hidden, CLIP MLP
    /// 4 x hidden), with random weights.
    /// </summary>
    private static string WidenedModel(string modelDir, string shape, string dir, Action<string> log)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDir, "config.json")))!.AsObject();
        if (config["text_config"] is not JsonObject text) throw new InvalidOptionException($"--random-weights: {modelDir}/config.json has no text_config (a llava config is needed)");
        foreach (var part in shape.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = part.Split('=', 2);
            var hl = kv.Length == 2 ? kv[1].Split('x') : [];
            if (hl.Length != 2 || !int.TryParse(hl[0], out int hidden) || !int.TryParse(hl[1], out int layers) || hidden < 64 || hidden % 64 != 0 || layers < 1)
                throw new InvalidOptionException($"--random-weights: '{part}' is not text=HIDDENxLAYERS or vision=HIDDENxLAYERS (HIDDEN a multiple of 64, LAYERS >= 1)");
            switch (kv[0])
            {
                case "text":
                    text["hidden_size"] = hidden;
                    text["intermediate_size"] = (hidden * 8 / 3 + 63) / 64 * 64;
                    text["num_hidden_layers"] = layers;
                    text["num_attention_heads"] = hidden / 64;
                    text["num_key_value_heads"] = hidden / 64;
                    text["head_dim"] = 64;
                    break;
                case "vision":
                    if (config["vision_config"] is not JsonObject vision) throw new InvalidOptionException("--random-weights: the model has no vision_config");
                    vision["hidden_size"] = hidden;
                    vision["intermediate_size"] = 4 * hidden;
                    vision["num_hidden_layers"] = layers;
                    vision["num_attention_heads"] = hidden / 64;
                    break;
                default:
                    throw new InvalidOptionException($"--random-weights: unknown part '{kv[0]}' (text or vision)");
            }
        }
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(modelDir))
        {
            string name = Path.GetFileName(f);
            if (name.StartsWith("tokenizer", StringComparison.Ordinal) || name is "preprocessor_config.json" or "special_tokens_map.json")
                File.Copy(f, Path.Combine(dir, name));
        }
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        using var random = LoadedModel.CreateRandom(LlavaMech.Checkpoints.ModelConfig.Load(dir), new ModelLoadOptions("cpu", "float32"));
        LlavaMech.Checkpoints.SafetensorsWriter.Write(Path.Combine(dir, LlavaMech.Checkpoints.Checkpoint.SingleFileName),
            random.Network.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
        log($"bench-pipeline: random-weight model {shape} written to {dir}");
        return dir;
    }

    /// <summary>Writes the accepted examples of <paramref name="dataset"/> repeated to <paramref name="n"/> lines (ids with a -rK suffix), images copied.</summary>
    private static string RepeatManifest(string dataset, string dir, int n)
    {
        var read = ManifestReader.Read(dataset);
        if (read.Examples.Count == 0) throw new InvalidOptionException($"--dataset: '{dataset}' has no accepted example");
        var lines = File.ReadAllLines(dataset);
        Directory.CreateDirectory(dir);
        foreach (var e in read.Examples.Where(e => e.ImagePath is not null).DistinctBy(e => e.ImageRelative))
        {
            string to = Path.Combine(dir, e.ImageRelative!);
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(e.ImagePath!, to, overwrite: true);
        }
        string path = Path.Combine(dir, "manifest.jsonl");
        using var w = new StreamWriter(path);
        for (int i = 0; i < n; i++)
        {
            var e = read.Examples[i % read.Examples.Count];
            var o = JsonNode.Parse(lines[e.Line - 1])!.AsObject();
            o["id"] = $"{e.Id}-r{i / read.Examples.Count:D5}";
            w.WriteLine(o.ToJsonString());
        }
        return path;
    }

    private static Measure RunLoop(string modelDir, string device, string dtype, int threads, JobOptions options, IReadOnlyList<ManifestExample> examples, int warmup)
    {
        if (threads > 0) set_num_threads(threads);
        using var model = LoadedModel.Load(modelDir, new ModelLoadOptions(device, dtype));
        using var analyzer = new ExampleAnalyzer(model);
        var settings = options.Analysis;
        int vocab = model.Config.Text.VocabSize;
        void One(ManifestExample e)
        {
            using var scope = NewDisposeScope();
            long? target = null;
            if (settings.Target == TargetMode.Expected && e.Expected is not null)
            {
                target = TargetResolver.SingleToken(e.Expected, model.Tokenizer, vocab);
                if (target is null) return;
            }
            ModelInput input;
            try { input = model.Prepare(e.Prompt, e.ImagePath); }
            catch (Exception x) when (x is LlavaMech.Processing.ProcessingException or IOException or ArgumentException or InvalidDataException) { return; }
            _ = analyzer.Analyze(input, settings.ToStatisticsOptions(target));
        }
        for (int i = 0; i < warmup; i++) One(examples[i % examples.Count]);   // as the pipeline's warm-up job
        long at10 = 0;
        int tenth = Math.Max(1, examples.Count / 10);
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var cpu10 = cpu0;
        var jit = new JitMeter(Environment.ProcessId);
        double jit10 = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < examples.Count; i++)
        {
            One(examples[i]);
            if (i + 1 == tenth)
            {
                at10 = ResourceUsage.ResidentBytes();
                cpu10 = Process.GetCurrentProcess().TotalProcessorTime;
                jit10 = jit.Sample();
            }
            else if (i % 8 == 0) jit.Sample();
        }
        double s = clock.Elapsed.TotalSeconds;
        var cpuEnd = Process.GetCurrentProcess().TotalProcessorTime;
        double jitEnd = jit.Sample();
        return new Measure("plain loop (ExampleAnalyzer, 1 process)", 1, examples.Count, s, examples.Count / s, null, null,
            [at10], [ResourceUsage.ResidentBytes()], [ResourceUsage.PeakResidentBytes()], null, (cpuEnd - cpu0).TotalMilliseconds / examples.Count,
            (cpuEnd - cpu10).TotalMilliseconds / (examples.Count - tenth), JitMsPerExample: (jitEnd - jit10) / (examples.Count - tenth));
    }

    private static async Task<Measure> RunPipelineAsync(Func<ProcessStartInfo> selfStart, string model, string manifest, string? warmManifest, string output, string device, string dtype, int threads,
        int processes, JobOptions options, int examples)
    {
        string clusterId = $"bench-{Environment.ProcessId}-{processes}";
        var ports = Enumerable.Range(0, processes).Select(_ => (Silo: PipelineHost.FreePort(), Gateway: PipelineHost.FreePort())).ToList();
        var silos = new List<Process>();
        var logs = new List<System.Text.StringBuilder>();
        IHost? client = null;
        try
        {
            for (int i = 0; i < processes; i++)
            {
                var psi = selfStart();
                foreach (var arg in new[]
                         {
                             "silo", "--clustering", "localhost", "--cluster-id", clusterId, "--silo-port", $"{ports[i].Silo}", "--gateway-port", $"{ports[i].Gateway}",
                             "--primary-port", $"{ports[0].Silo}", "--devices", device, "--torch-threads", $"{threads}", "--parent-pid", $"{Environment.ProcessId}", "--verbose",
                         })
                    psi.ArgumentList.Add(arg);
                psi.Environment["LLAVAMECH_Pipeline__PreloadModel"] = model;
                psi.Environment["LLAVAMECH_Pipeline__PreloadDType"] = dtype;
                psi.Environment["LLAVAMECH_Pipeline__PollMs"] = "100";
                var log = new System.Text.StringBuilder();
                var p = new Process { StartInfo = psi };
                p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
                p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
                p.Start();
                p.BeginErrorReadLine();
                p.BeginOutputReadLine();
                silos.Add(p);
                logs.Add(log);
                if (i == 0) await WaitForAsync(p, log, "pulling work", TimeSpan.FromMinutes(3)).ConfigureAwait(false);   // the primary first
            }
            for (int i = 0; i < processes; i++)
            {
                await WaitForAsync(silos[i], logs[i], "pulling work", TimeSpan.FromMinutes(3)).ConfigureAwait(false);
                await WaitForAsync(silos[i], logs[i], ": loaded ", TimeSpan.FromMinutes(3)).ConfigureAwait(false);
            }
            client = PipelineHost.BuildClient(new ClusterSettings { ClusterId = clusterId, GatewayPort = ports[0].Gateway, ResponseTimeout = TimeSpan.FromSeconds(30) });
            await client.StartAsync().ConfigureAwait(false);
            var grains = client.Services.GetRequiredService<IClusterClient>();
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
            while ((await grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true).ConfigureAwait(false)).Count < processes)
            {
                if (DateTime.UtcNow > deadline) throw new InvalidOperationException($"the {processes} worker processes did not form a cluster");
                await Task.Delay(100).ConfigureAwait(false);
            }

            var pipeline = new PipelineClient(grains) { PollInterval = TimeSpan.FromMilliseconds(100) };
            if (warmManifest is not null)
            {
                var warm = await pipeline.RunAsync(new JobSpec($"bench-warmup-p{processes}", model, warmManifest, output + "-warmup", options), null).ConfigureAwait(false);
                if (warm.State != JobState.Completed) throw new InvalidOperationException($"the warm-up job {warm.State.ToString().ToLowerInvariant()}: {warm.Error}");
            }
            var spec = new JobSpec($"bench-p{processes}", model, manifest, output, options);
            double cpu0 = silos.Sum(CpuMs), cpu10 = 0, jit10 = 0, jit100 = 0;
            var jits = silos.Select(p => new JitMeter(p.Id)).ToList();
            var clock = Stopwatch.StartNew();
            var status = await pipeline.SubmitAsync(spec).ConfigureAwait(false);
            double cpu100 = 0;
            double? t10 = null, t100 = null;
            int done10 = 0;
            long[] rss10 = [], rss100 = [];
            while (!status.IsTerminal)
            {
                await Task.Delay(50).ConfigureAwait(false);
                status = await pipeline.StatusAsync(spec.JobId).ConfigureAwait(false);
                double jitNow = jits.Sum(j => j.Sample());
                if (t10 is null && status.ExamplesDone >= examples / 10)
                {
                    t10 = clock.Elapsed.TotalSeconds;
                    done10 = status.ExamplesDone;
                    rss10 = silos.Select(p => ResourceUsage.StatusBytes(p.Id, "VmRSS:")).ToArray();
                    cpu10 = silos.Sum(CpuMs);
                    jit10 = jitNow;
                }
                if (t100 is null && status.ShardsTotal > 0 && status.ShardsDone + status.ShardsFailed == status.ShardsTotal)
                {
                    t100 = clock.Elapsed.TotalSeconds;
                    rss100 = silos.Select(p => ResourceUsage.StatusBytes(p.Id, "VmRSS:")).ToArray();
                    cpu100 = silos.Sum(CpuMs);
                    jit100 = jitNow;
                }
            }
            double end = clock.Elapsed.TotalSeconds;
            if (status.State != JobState.Completed) throw new InvalidOperationException($"the benchmark job {status.State.ToString().ToLowerInvariant()}: {status.Error}");
            t100 ??= end;
            if (rss100.Length == 0) rss100 = silos.Select(p => ResourceUsage.StatusBytes(p.Id, "VmRSS:")).ToArray();
            if (cpu100 == 0) cpu100 = silos.Sum(CpuMs);
            var peak = silos.Select(p => ResourceUsage.StatusBytes(p.Id, "VmHWM:")).ToArray();
            double? steady = t10 is { } a && t100 > a ? (examples - done10) / (t100.Value - a) : null;
            return new Measure($"pipeline, {processes} worker process{(processes == 1 ? "" : "es")}", processes, examples, t100.Value, examples / t100.Value, steady,
                end - t100.Value, rss10, rss100, peak, null, (cpu100 - cpu0) / examples, t10 is null || examples == done10 ? null : (cpu100 - cpu10) / (examples - done10),
                JitMsPerExample: t10 is null || examples == done10 || jit100 == 0 ? null : (jit100 - jit10) / (examples - done10));
        }
        catch (Exception e) when (e is not InvalidOptionException)
        {
            string tail = string.Join("\n", logs.Select((l, i) => $"--- worker {i}:\n{Tail(l)}"));
            throw new InvalidOperationException($"pipeline run with {processes} process(es) failed: {e.Message}\n{tail}", e);
        }
        finally
        {
            if (client is not null)
            {
                try { await client.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token).ConfigureAwait(false); } catch (Exception) { }
                client.Dispose();
            }
            foreach (var p in silos)
            {
                try { if (!p.HasExited) p.Kill(entireProcessTree: true); p.WaitForExit(10_000); } catch (InvalidOperationException) { }
                p.Dispose();
            }
        }
    }

    private static string Tail(System.Text.StringBuilder log)
    {
        lock (log)
        {
            var s = log.ToString();
            return s.Length > 2000 ? s[^2000..] : s;
        }
    }

    private static async Task WaitForAsync(Process p, System.Text.StringBuilder log, string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            lock (log) if (log.ToString().Contains(text, StringComparison.Ordinal)) return;
            if (p.HasExited) throw new InvalidOperationException($"worker process exited ({p.ExitCode}) before '{text.Trim()}'");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"worker process did not log '{text.Trim()}' within {timeout.TotalSeconds:0} s");
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    private static double CpuMs(Process p)
    {
        try
        {
            p.Refresh();
            return p.TotalProcessorTime.TotalMilliseconds;
        }
        catch (InvalidOperationException) { return 0; }
    }

    /// <summary>
    /// CPU milliseconds of the runtime's tiered-compilation threads of a process (re-JIT of hot methods). That thread
    /// exits when idle and a new one starts later, so each thread's last seen time is kept: sample often.
    /// </summary>
    private sealed class JitMeter(int pid)
    {
        private readonly Dictionary<string, double> _seen = new(StringComparer.Ordinal);

        public double Sample()
        {
            try
            {
                foreach (var task in Directory.GetDirectories($"/proc/{pid}/task"))
                {
                    string stat;
                    try { stat = File.ReadAllText(Path.Combine(task, "stat")); }
                    catch (IOException) { continue; }
                    int open = stat.IndexOf('('), close = stat.LastIndexOf(')');
                    if (open < 0 || close < open || !stat[(open + 1)..close].StartsWith(".NET Tiered", StringComparison.Ordinal)) continue;
                    var f = stat[(close + 2)..].Split(' ');
                    _seen[Path.GetFileName(task)] = (double.Parse(f[11], CultureInfo.InvariantCulture) + double.Parse(f[12], CultureInfo.InvariantCulture)) * 10;   // USER_HZ = 100
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            return _seen.Values.Sum();
        }
    }


    /// <summary>The figures as JSON rows (one per measured run), or a Markdown table with the definitions of its columns.</summary>
    public static string Format(List<Measure> results, bool json, int threads, string device, Func<object, string> serialize)
    {
        if (json)
        {
            return serialize(results.Select(m => new Dictionary<string, object?>
            {
                ["mode"] = m.Mode, ["processes"] = m.Processes, ["examples"] = m.Examples, ["seconds"] = m.Seconds, ["examples_per_second"] = m.PerSecond,
                ["steady_examples_per_second"] = m.SteadyPerSecond, ["finalize_seconds"] = m.FinalizeSeconds, ["overhead"] = m.Overhead,
                ["cpu_ms_per_example"] = m.CpuMsPerExample, ["steady_cpu_ms_per_example"] = m.SteadyCpuMsPerExample, ["cpu_overhead"] = m.CpuOverhead,
                ["steady_jit_ms_per_example"] = m.JitMsPerExample, ["cpu_overhead_without_jit"] = m.CpuOverheadWithoutJit,
                ["rss_at_10pct_bytes"] = m.RssAt10, ["rss_at_100pct_bytes"] = m.RssAt100, ["peak_rss_bytes"] = m.PeakRss, ["torch_threads"] = threads, ["device"] = device,
                ["cores"] = Environment.ProcessorCount,
            }).ToList());
        }
        static string Mib(IEnumerable<long> v) => string.Join(" + ", v.Select(b => (b / (1024.0 * 1024.0)).ToString("0", CultureInfo.InvariantCulture)));
        var rows = results.Select(m => (IReadOnlyList<string>)
        [
            m.Mode, m.Examples.ToString(CultureInfo.InvariantCulture), m.Seconds.ToString("0.0", CultureInfo.InvariantCulture), m.PerSecond.ToString("0.0", CultureInfo.InvariantCulture),
            m.SteadyPerSecond?.ToString("0.0", CultureInfo.InvariantCulture) ?? "", m.FinalizeSeconds?.ToString("0.0", CultureInfo.InvariantCulture) ?? "",
            m.Overhead is { } o ? SignedNumber.Percent(o) : "", m.CpuMsPerExample.ToString("0.00", CultureInfo.InvariantCulture),
            m.SteadyCpuMsPerExample?.ToString("0.00", CultureInfo.InvariantCulture) ?? "",
            m.CpuOverhead is { } c ? SignedNumber.Percent(c) : "",
            m.JitMsPerExample?.ToString("0.00", CultureInfo.InvariantCulture) ?? "",
            m.CpuOverheadWithoutJit is { } cj ? SignedNumber.Percent(cj) : "",
            Mib(m.RssAt10), Mib(m.RssAt100), Mib(m.PeakRss),
        ]).ToList();
        return LlavaMech.Reports.MarkdownTable.Render(
            ["mode", "examples", "seconds", "examples/s", "steady examples/s (10%-100%)", "finalize s", "overhead (wall)", "CPU ms/example", "steady CPU ms/example (10%-100%)", "overhead (CPU)", "of which JIT ms/example", "overhead (CPU, without JIT)", "RSS MiB at 10%", "RSS MiB at 100%", "peak RSS MiB"], rows) + Environment.NewLine + Environment.NewLine + $"{device}, {threads} torch thread(s) per process, {Environment.ProcessorCount} cores. Overhead (wall) = 1 - pipeline examples/s / (processes x loop examples/s); " +
                          "overhead (CPU) = steady pipeline CPU time per example (all worker processes, all threads, 10% to 100% of the examples) / the loop's - 1, " +
                          "the steadier figure on a shared machine; both ran --warmup examples first; JIT = the runtime's tiered-compilation thread (re-JIT of hot " +
                          "methods, a start-up cost that a longer run amortizes; the worker processes carry far more code: Orleans, Parquet, storage clients); " +
                          "pipeline seconds run from the submit to the last shard committed (model preloaded, as the loop's); finalization (aggregates, figures) is timed apart. " +
                          "RSS of the worker processes (one figure per process), of this process for the loop.";
    }
}
