using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlavaMech.Cli.Commands;

/// <summary>
/// The distributed batch pipeline: <c>run</c> (an in-process silo + worker, one job, live progress, summary),
/// <c>silo</c> (a long-running silo of a cluster), and <c>submit</c> / <c>status</c> / <c>cancel</c> against a cluster.
/// </summary>
public static class PipelineCommands
{
    // ---------------------------------------------------------------- job options shared by run and submit

    /// <summary>The analysis and scheduling options of a job, the same for run, submit and reanalyze.</summary>
    internal static readonly CommandLine.OptionSpec[] JobOptionSpecs =
    [
        new("shard-size", "N", "examples per shard: the unit of leasing, commit and resume", "32") { Range = CommandLine.NumericRange.Int(1, 1_000_000) },
        .. SettingsOptions.Specs<AnalysisSettings>(),
        DeviceOptions.DType,
        new("lease-seconds", "S", "shard lease duration; a worker that stops renewing loses its shard after this long", "60") { Range = CommandLine.NumericRange.Real(1, 86_400) },
        new("max-attempts", "N", "attempts per shard before it counts as failed", "3") { Range = CommandLine.NumericRange.Int(1, 1000) },
        new("storage-wait", "S", "while the output storage is unreachable, the job pauses and retries for this long, then fails naming the endpoint", "300") { Range = CommandLine.NumericRange.Real(0, 604_800) },
        new("max-line-bytes", "N", "a manifest line longer than this is rejected (its start, length and SHA-256 go to rejects) without being held in memory", ManifestLimits.DefaultMaxLineBytes.ToString(CultureInfo.InvariantCulture)) { Range = CommandLine.NumericRange.Int(64, ManifestLimits.MaxMaxLineBytes) },
        new("image-root", "DIR", "a folder where absolute image paths, and targets of symbolic links in the dataset folder, may lie (otherwise images must be inside the manifest's folder)") { Repeatable = true },
    ];

    private static readonly CommandLine.OptionSpec[] JobSpecs =
    [
        new("model", "DIR", "checkpoint folder (Hugging Face LLaVA or Llama layout)", Required: true),
        new("dataset", "MANIFEST", "manifest.jsonl (datasets/README.md); bad lines go to the rejects table", Required: true),
        new("out", "LOCATION", "output: a folder, az://container/prefix or an https blob URL (credentials: LLAVAMECH_STORAGE_CONNECTION)", Required: true),
        new("run-id", "ID", "the run's name in every row (default: derived from --out, so the same command resumes)"),
        .. JobOptionSpecs,
    ];

    private static JobSpec ReadJob(CommandLine cl) => ReadJob(cl, null);

    /// <summary>The job of the command line; <paramref name="runId"/> and <paramref name="outOverride"/> replace --run-id and --out (reanalyze).</summary>
    internal static JobSpec ReadJob(CommandLine cl, string? runId, string? outOverride = null)
    {
        string output = outOverride ?? cl.Require("out");
        try { output = OutputLocation.Normalize(output); }
        catch (ArgumentException e) { throw new UsageException($"--out: {e.Message}"); }
        string model = Path.GetFullPath(cl.Require("model"));
        string manifest = Path.GetFullPath(cl.Require("dataset"));
        if (!File.Exists(manifest)) throw new UsageException($"--dataset: '{manifest}' does not exist");
        var options = new JobOptions
        {
            ShardSize = cl.GetInt("shard-size"),
            Analysis = SettingsOptions.Bind<AnalysisSettings>(cl),
            DType = cl.Require("dtype"),
            LeaseSeconds = cl.GetDouble("lease-seconds"),
            MaxAttempts = cl.GetInt("max-attempts"),
            StorageWaitSeconds = cl.GetDouble("storage-wait"),
            MaxLineBytes = cl.GetLong("max-line-bytes"),
            ImageRoots = string.Join('\n', cl.GetAll("image-root").Select(Path.GetFullPath)),
        };
        var spec = new JobSpec(runId ?? cl.Get("run-id") ?? PipelineClient.DefaultRunId(output), model, manifest, output, options);
        try { spec.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return spec;
    }

    // ---------------------------------------------------------------- run

    /// <summary>
    /// What <c>run</c> runs when not told otherwise: the trained toy LLaVA on the bundled mini set, so the quick
    /// start's answers and accuracy mean something. Paths are relative to the current folder (./llavamech runs
    /// from the repository root).
    /// </summary>
    internal const string DefaultRunModel = "datasets/shapes-colors-mini/toy-llava", DefaultRunDataset = "datasets/shapes-colors-mini/manifest.jsonl", DefaultRunOut = "out/demo";

    /// <summary>The in-process silo of run and reanalyze (<see cref="RunEmbedded"/>).</summary>
    internal static readonly CommandLine.OptionSpec[] EmbeddedSiloSpecs =
    [
        new("device", "DEVS", "devices of the in-process worker: cpu, cuda, cuda:N, or a list (cuda:0,cuda:1)", "cpu"),
        new("workers-per-device", "N", "runner threads per device, each with its own warm copy of the model", "1") { Range = CommandLine.NumericRange.Int(1, 64) },
        new("torch-threads", "N", "libtorch intra-op threads for the process (0: one per core; on a busy machine or with several workers, 1 is often much faster)", "0") { Range = CommandLine.NumericRange.Int(0, 4096) },
        DeviceOptions.LibTorch,
        new("verbose", null, "log the silo's and the workers' progress to standard error"),
    ];

    public static readonly CommandLine.OptionSpec[] RunSpecs =
    [
        .. JobSpecs.Select(s => s.Name switch
        {
            "model" => s with { Required = false, Default = DefaultRunModel },
            "dataset" => s with { Required = false, Default = DefaultRunDataset },
            "out" => s with { Required = false, Default = DefaultRunOut },
            _ => s,
        }),
        .. EmbeddedSiloSpecs,
    ];

    public const string RunDescription = """
        Runs the whole dataset through the hooked model on this machine, as one job of the
        distributed pipeline: starts an in-process Orleans silo (localhost clustering on free ports)
        with a worker per device, splits the manifest into shards, runs each shard's examples,
        writes the shard's Parquet part files and commits them (exactly once per shard), then
        aggregates head_summary/layer_summary and draws figures. A live progress line shows shards,
        examples/s and ETA from the job grain; a summary follows: examples, rejects, accuracy where
        the manifest gives the expected answer, the top heads, and where the tables are.

        Tables in --out (one folder of part files each; read with DuckDB, pandas or Spark, see
        src/LlavaMech.Storage/TABLES.md): examples, layer_stats, head_stats, position_stats (top
        heads: every position, is_image, patch_row/col, attention weight), neuron_stats (top
        neurons with their MLP coefficient), logit_lens (visual tokens' top-5), resid_norms
        (residual-stream norms per layer), causal_effects (--causal K: three zero-ablations of K
        heads per example), knockout_effects (--knockout-window W: last:image knocked out per
        window of W layers), rejects (bad
        manifest lines and examples the model could not take, with the reason), head_summary,
        layer_summary; figures/heads_<task>.png, figures/layers_<task>.png (and with --causal /
        --knockout-window figures/causal.png, figures/knockout.png); summary.json.

        Interrupted or failed runs resume: run the same command again (same --out, or the same
        --run-id) and the committed shards are skipped. One output location holds one run.

        Ctrl+C (SIGINT) and SIGTERM (kill, systemd, Kubernetes, timeout) stop the run gracefully:
        no new shards are leased, shards in flight are dropped without committing anything, and
        the command exits with 130 (SIGINT) or 143 (SIGTERM) within seconds, naming how many shards
        are committed; a second signal ends the process at once. Examples whose statistics are not
        finite (NaN, infinity) or whose analysis fails go to rejects with the reason; the rest of
        their shard commits.
        """;

    public const string RunExamples = """
          ./llavamech run        (the defaults: the toy model on the bundled mini set, into out/demo)
          ./llavamech run --model datasets/shapes-colors-mini/toy-llava --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/run1 --target expected
          ./llavamech run --model llava-1.5-7b-hf --dataset coco/manifest.jsonl --out out/coco --device cuda:0,cuda:1 --shard-size 64 --target expected
          ./llavamech run ... --out az://results/coco-run1        (LLAVAMECH_STORAGE_CONNECTION or AZURE_STORAGE_ACCOUNT set)
          duckdb -c "SELECT layer, head, mean FROM 'out/run1/head_summary/*.parquet' WHERE outcome = 'all' ORDER BY mean DESC LIMIT 5"
        """;

    public static int Run(CommandLine cl)
    {
        TorchRuntime.UseLibTorchFrom(cl.Get("libtorch"));
        var spec = ReadJob(cl);
        return RunEmbedded(cl, spec, null);
    }

    /// <summary>
    /// Runs <paramref name="spec"/> on an in-process silo with the devices of <paramref name="cl"/> (--device,
    /// --workers-per-device, --torch-threads, --verbose), with the progress line and the summary; returns the exit code.
    /// <paramref name="finished"/> sees the final status before the summary is printed.
    /// </summary>
    internal static int RunEmbedded(CommandLine cl, JobSpec spec, Action<JobStatus>? finished)
    {
        IReadOnlyList<string> devices;
        try { devices = PipelineSiloOptions.ParseDevices(cl.Require("device")); }
        catch (ArgumentException e) { throw new UsageException($"--device: {e.Message}"); }
        if (devices.Count == 0) throw new UsageException("--device none leaves the in-process silo without a worker; name a device");
        int workers = cl.GetInt("workers-per-device"), torchThreads = cl.GetInt("torch-threads");   // ranges checked by the parser

        var pipeline = new PipelineSiloOptions
        {
            Devices = devices, WorkersPerDevice = workers, TorchThreads = torchThreads,
            Roots = PathRoots.ForCommandLine(spec, Environment.CurrentDirectory),
        };
        var clock = Stopwatch.StartNew();
        using var host = PipelineHost.BuildInProcessSilo(pipeline, cl.Flag("verbose") ? LogLevel.Information : LogLevel.Warning);
        // SIGINT (Ctrl+C) and SIGTERM (kill, systemd, Kubernetes, timeout): cancel the job (leasing stops, in-flight
        // shards are dropped uncommitted), stop the silo, exit 130 / 143; the same command resumes.
        using var signals = new ShutdownSignals(s => Console.Error.WriteLine($"{Environment.NewLine}llavamech run: {s} received; stopping (committed shards stay)..."));
        try
        {
            host.StartAsync().GetAwaiter().GetResult();
            Console.Error.WriteLine($"llavamech run {spec.RunId}: {spec.ModelDir} over {spec.ManifestPath} -> {spec.Output} ({string.Join(",", devices)} x {workers})");
            var client = new PipelineClient(host.Services.GetRequiredService<IGrainFactory>());
            var progress = new StatusLine();
            JobStatus final;
            try
            {
                final = client.RunAsync(spec, progress.Report, signals.Token).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException) when (signals.Token.IsCancellationRequested)
            {
                progress.Done();
                var st = client.CancelAsync(spec.JobId, $"interrupted ({signals.SignalName})").GetAwaiter().GetResult();
                Console.Error.WriteLine($"llavamech run: interrupted by {signals.SignalName}; {st.ShardsDone} of {st.ShardsTotal} shards are committed in {spec.Output}. " +
                                        $"Run the same command again to resume. Exit code {signals.ExitCode}.");
                return signals.ExitCode;
            }
            progress.Done();
            Print(JobText.Summary(final, clock.Elapsed));
            finished?.Invoke(final);
            return final.State == JobState.Completed ? 0 : 1;
        }
        finally
        {
            try { host.StopAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult(); } catch (OperationCanceledException) { }
        }
    }

    /// <summary>The live progress line: shards, examples, examples/s and ETA as the job grain reports them.</summary>
    private sealed class StatusLine
    {
        private readonly bool _tty = !Console.IsErrorRedirected;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _lastMs = -100_000;
        private JobState _lastState = JobState.Unknown;
        private bool _drawn;

        public void Report(JobStatus s)
        {
            long now = _clock.ElapsedMilliseconds;
            bool changed = s.State != _lastState;
            if (!changed && !s.IsTerminal && now - _lastMs < (_tty ? 200 : 10_000)) return;
            _lastMs = now;
            _lastState = s.State;
            string line = JobText.Progress(s);
            if (_tty) Console.Error.Write("\r" + line.PadRight(Math.Max(line.Length, 110)));
            else Console.Error.WriteLine(line);
            _drawn = true;
        }

        public void Done()
        {
            if (_tty && _drawn) Console.Error.WriteLine();
            _drawn = false;
        }
    }

    private static void Print(IEnumerable<string> lines) { foreach (var line in lines) Console.WriteLine(line); }


    // ---------------------------------------------------------------- silo

    /// <summary>How a silo or a client finds and joins the cluster: the options of silo, submit, status and cancel.</summary>
    private static readonly CommandLine.OptionSpec[] ClusterSpecs =
    [
        new("config", "FILE", "JSON configuration (sections Cluster and Pipeline; keys below); LLAVAMECH_ environment variables override it, options override both"),
        new("clustering", "KIND", "localhost (one machine) or azuretable (membership table in Azure Storage)") { ConfigKey = "Cluster:Clustering" },
        new("connection", "TEXT", $"the connection string of azuretable clustering (prefer ${ClusterSettings.ConnectionVariable})") { ConfigKey = "Cluster:ConnectionString" },
        new("cluster-id", "ID", "default llavamech") { ConfigKey = "Cluster:ClusterId" },
        new("gateway-port", "PORT", "a silo's gateway port for clients (default 30000)") { Range = CommandLine.NumericRange.Port, ConfigKey = "Cluster:GatewayPort" },
        new("tls", "DIR", $"mutual TLS with tls.crt, tls.key and ca.crt of this folder (required for silos with azuretable clustering; also ${ClusterSettings.TlsDirVariable})") { ConfigKey = "Cluster:TlsDir" },
    ];

    public static readonly CommandLine.OptionSpec[] SiloSpecs =
    [
        .. ClusterSpecs,
        new("silo-port", "PORT", "default 11111") { Range = CommandLine.NumericRange.Port, ConfigKey = "Cluster:SiloPort" },
        new("primary-port", "PORT", "localhost clustering: the first silo's port (default: this silo is the primary)") { Range = CommandLine.NumericRange.Port, ConfigKey = "Cluster:PrimarySiloPort" },
        new("advertise", "IP", "azuretable: the address other silos reach this one at") { ConfigKey = "Cluster:AdvertisedAddress" },
        new("devices", "DEVS", "cpu, cuda:0,cuda:1, or none (hosts grains only; default cpu)") { ConfigKey = "Pipeline:Devices" },
        new("workers-per-device", "N", "default 1") { Range = CommandLine.NumericRange.Int(1, 64), ConfigKey = "Pipeline:WorkersPerDevice" },
        new("torch-threads", "N", "libtorch intra-op threads (default: one per core)") { Range = CommandLine.NumericRange.Int(0, 4096), ConfigKey = "Pipeline:TorchThreads" },
        new("state-store", "LOCATION", "memory, or a folder / az://container/prefix all silos share (jobs survive silo loss)") { ConfigKey = "Pipeline:StateStore" },
        new("model-roots", "DIRS", "folders (comma-separated) where jobs' model folders must lie, links resolved (default: anywhere)") { ConfigKey = "Pipeline:Roots:Models" },
        new("manifest-roots", "DIRS", "folders where jobs' manifests (and so their images) must lie") { ConfigKey = "Pipeline:Roots:Manifests" },
        new("image-roots", "DIRS", "folders where jobs' --image-root folders must lie") { ConfigKey = "Pipeline:Roots:Images" },
        new("output-roots", "LOCATIONS", "folders or az://container[/prefix] where jobs may write") { ConfigKey = "Pipeline:Roots:Outputs" },
        new("health-port", "PORT", "serve /healthz and /readyz on this port (default 0: no endpoint)") { Range = CommandLine.NumericRange.Port, ConfigKey = "Telemetry:HealthPort" },
        DeviceOptions.LibTorch,
        new("parent-pid", "PID", "stop this silo when process PID exits (supervisors, tests)") { Range = CommandLine.NumericRange.Int(1) },
        new("verbose", null, "log at information level"),
    ];

    public const string SiloDescription = """
        Runs one silo of a pipeline cluster until Ctrl+C or SIGTERM. Silos with devices pull shard
        leases of active jobs and run them; on SIGTERM or Ctrl+C a silo stops leasing, drops the
        shards it is running without committing them and gives their leases back to the job (other
        silos take them at once, without waiting for the lease to expire), leaves the cluster and
        exits 0; a silo with --devices none only hosts grains. Submit
        jobs with ./llavamech submit. Model folders, manifests and images must be readable at the
        same paths on every silo (shared storage); outputs may be local to a shared folder or in
        Azure Blob Storage.

        Configuration, lowest to highest precedence: --config FILE (JSON), environment variables
        LLAVAMECH_<Section>__<Key> (e.g. LLAVAMECH_Pipeline__Devices=cuda:0,cuda:1,
        LLAVAMECH_Cluster__Clustering=azuretable, LLAVAMECH_CLUSTERING_CONNECTION=<connection string>),
        then the options. Keys: Cluster:Clustering, ConnectionString, ClusterId, ServiceId,
        SiloPort, GatewayPort, PrimarySiloPort, AdvertisedAddress, ResponseTimeoutSeconds;
        Pipeline:Devices, WorkersPerDevice, LeasesPerThread, TorchThreads, StateStore, PollMs, RunnerCapacity,
        PreloadModel, PreloadDType; Telemetry:HealthPort, HealthBind, LogFormat (simple or json), ReadinessGates.

        With Telemetry:HealthPort set, GET /healthz answers 200 while the process serves, and GET
        /readyz 200 only when the silo has started, every runner thread has checked its device (not
        ready while a runner is faulted) and, with Pipeline:PreloadModel, loaded the model; else 503.
        Metrics and traces (meter and activity source LlavaMech.Pipeline) go out over OTLP when
        OTEL_EXPORTER_OTLP_ENDPOINT is set.
        """;

    public const string SiloExamples = """
          ./llavamech silo                                           (primary, localhost, cpu)
          ./llavamech silo --silo-port 11112 --gateway-port 30001 --primary-port 11111 --devices cpu
          LLAVAMECH_CLUSTERING_CONNECTION='DefaultEndpointsProtocol=...' ./llavamech silo --clustering azuretable \
              --advertise 10.0.0.5 --devices cuda:0,cuda:1 --state-store az://llavamech/state
        """;

    public static int Silo(CommandLine cl)
    {
        TorchRuntime.UseLibTorchFrom(cl.Get("libtorch"));
        var config = Configuration(cl);
        ClusterSettings cluster;
        PipelineSiloOptions pipeline;
        try
        {
            cluster = ClusterSettings.FromConfiguration(config);
            pipeline = PipelineSiloOptions.FromConfiguration(config);
            cluster.Validate();
            pipeline.Validate();
        }
        catch (ArgumentException e) { throw new UsageException(e.Message); }

        int? parent = cl.Get("parent-pid") is null ? null : cl.GetInt("parent-pid");
        IHost host;
        try { host = PipelineHost.BuildSilo(pipeline, cluster, cl.Flag("verbose") ? LogLevel.Information : LogLevel.Warning, config); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }   // e.g. Telemetry:HealthPort is not a port
        using var _ = host;
        if (parent is { } pid) PipelineHost.StopWithParent(host, pid, Console.Error.WriteLine);
        // SIGTERM and SIGINT stop the silo gracefully: its workers stop leasing, give their leases back to the job
        // (another silo takes the shards at once), and the silo leaves the cluster; exit code 0.
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        using var signals = new ShutdownSignals(s =>
        {
            Console.Error.WriteLine($"llavamech silo: {s} received; releasing leases and stopping");
            lifetime.StopApplication();
        });
        Console.Error.WriteLine($"llavamech silo: cluster '{cluster.ClusterId}' ({cluster.Clustering}, {(cluster.TlsDir is null ? "plaintext on loopback" : $"mutual TLS with {cluster.TlsDir}")}), silo port {cluster.SiloPort}, gateway port {cluster.GatewayPort}, " +
                                $"devices {(pipeline.Devices.Count == 0 ? "none" : string.Join(",", pipeline.Devices))} x {pipeline.WorkersPerDevice}, state {pipeline.StateStore}, " +
                                $"{(host.Services.GetRequiredService<LlavaMech.Telemetry.TelemetryOptions>().HealthPort is > 0 and var hp ? $"/healthz /readyz on port {hp}" : "no health endpoint")}. Ctrl+C stops it.");
        host.Run();   // returns after a graceful shutdown (SIGTERM, Ctrl+C, the parent's exit)
        Console.Error.WriteLine("llavamech silo: stopped");
        return 0;
    }

    /// <summary>--config FILE, then LLAVAMECH_ environment variables, then the options with a configuration key.</summary>
    private static IConfiguration Configuration(CommandLine cl)
    {
        var b = new ConfigurationBuilder();
        if (cl.Get("config") is { } file)
        {
            if (!File.Exists(file)) throw new UsageException($"--config: '{file}' does not exist");
            b.AddJsonFile(Path.GetFullPath(file), optional: false);
        }
        b.AddEnvironmentVariables("LLAVAMECH_");
        b.AddInMemoryCollection(cl.Overrides());
        return b.Build();
    }

    // ---------------------------------------------------------------- submit, status, cancel

    public static readonly CommandLine.OptionSpec[] SubmitSpecs =
    [
        .. JobSpecs,
        new("wait", null, "watch the job with a progress line until it ends, then print the summary"),
        .. ClusterSpecs,
    ];

    public const string SubmitDescription = """
        Submits a job to a running cluster (./llavamech silo) and prints its id (the run id).
        Paths are made absolute here and must be valid on the silos. Submitting the same run again
        resumes it; a run that is still active with the same inputs is left as it is.
        """;

    public const string SubmitExamples = """
          ./llavamech submit --model /shared/llava-1.5-7b-hf --dataset /shared/coco/manifest.jsonl --out az://results/coco --shard-size 64
          ./llavamech submit ... --wait
        """;

    public static int Submit(CommandLine cl)
    {
        var spec = ReadJob(cl);
        return WithClient(cl, client =>
        {
            var status = client.SubmitAsync(spec).GetAwaiter().GetResult();
            Console.WriteLine(spec.JobId);
            if (!cl.Flag("wait"))
            {
                Print(JobText.Status(status));
                return status.State == JobState.Failed ? 1 : 0;
            }
            var clock = Stopwatch.StartNew();
            var progress = new StatusLine();
            var final = client.WatchAsync(spec.JobId, spec, progress.Report).GetAwaiter().GetResult();
            progress.Done();
            Print(JobText.Summary(final, clock.Elapsed));
            return final.State == JobState.Completed ? 0 : 1;
        });
    }

    public static readonly CommandLine.OptionSpec[] StatusSpecs =
    [
        new("job", "ID", "the job (run id); without it, the cluster's jobs are listed"),
        .. ClusterSpecs,
    ];

    public const string StatusDescription = "Where a job stands: state, shards done/running/failed/pending, examples, examples/s, ETA, and its summary once it is done.";
    public const string StatusExamples = "  ./llavamech status\n  ./llavamech status --job run-3f2a9c1d0b7e";

    public static int Status(CommandLine cl) => WithClient(cl, client =>
    {
        if (cl.Get("job") is not { } job)
        {
            var jobs = client.ListAsync().GetAwaiter().GetResult();
            if (jobs.Length == 0) Console.WriteLine("no jobs");
            foreach (var j in jobs)
                Console.WriteLine($"{j.JobId,-40} {(j.Active ? "active" : "finished"),-9} submitted {j.SubmittedAt:yyyy-MM-dd HH:mm:ss}Z");
            return 0;
        }
        var status = client.StatusAsync(job).GetAwaiter().GetResult();
        if (status.State == JobState.Unknown)
        {
            Console.Error.WriteLine($"llavamech status: no job '{job}' in this cluster");
            return 1;
        }
        Print(JobText.Status(status));
        return 0;
    });

    public static readonly CommandLine.OptionSpec[] CancelSpecs =
    [
        new("job", "ID", "the job (run id)", Required: true),
        .. ClusterSpecs,
    ];

    public const string CancelDescription = "Cancels a job: no more shards are leased and running ones stop at their next lease renewal. Committed shards stay; submitting the job again resumes it.";
    public const string CancelExamples = "  ./llavamech cancel --job run-3f2a9c1d0b7e";

    public static int Cancel(CommandLine cl) => WithClient(cl, client =>
    {
        string job = cl.Require("job");
        var before = client.StatusAsync(job).GetAwaiter().GetResult();
        if (before.State == JobState.Unknown)
        {
            Console.Error.WriteLine($"llavamech cancel: no job '{job}' in this cluster");
            return 1;
        }
        var status = client.CancelAsync(job, "cancelled from the command line").GetAwaiter().GetResult();
        Print(JobText.Status(status));
        return 0;
    });

    private static int WithClient(CommandLine cl, Func<PipelineClient, int> body)
    {
        var config = Configuration(cl);
        ClusterSettings cluster;
        try
        {
            cluster = ClusterSettings.FromConfiguration(config);
            cluster.Validate();
        }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return PipelineHost.WithClient(cluster, body);
    }

}
