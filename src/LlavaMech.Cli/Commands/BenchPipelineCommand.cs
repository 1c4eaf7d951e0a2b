using LlavaMech.Pipeline.Benchmarks;

namespace LlavaMech.Cli.Commands;

/// <summary>
/// <c>bench-pipeline</c>: parses the options of <see cref="PipelineBenchmark"/> and prints its figures.
/// </summary>
public sealed class BenchPipelineCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("model", "DIR", "checkpoint folder", Required: true),
        new("dataset", "MANIFEST", "manifest.jsonl; its accepted examples are repeated (new ids) up to --examples", Required: true),
        new("examples", "N", "examples per measured run (the manifest repeated)", "2000") { Range = CommandLine.NumericRange.Int(1, 10_000_000) },
        new("processes", "LIST", "worker processes of the pipeline runs: 1, 2, or 1,2 for both", "1"),
        new("warmup", "N", "examples run before the measured ones (the loop's, and a warm-up job on the worker processes): JIT and caches warm", "128") { Range = CommandLine.NumericRange.Int(0, 10_000_000) },
        new("torch-threads", "N", "libtorch intra-op threads of the loop and of each worker process", "1") { Range = CommandLine.NumericRange.Int(0, 4096) },
        new("shard-size", "N", "examples per shard", "32") { Range = CommandLine.NumericRange.Int(1, 1_000_000) },
        .. SettingsOptions.Specs<AnalysisSettings>(),
        new("device", "DEV", "the device of the loop and of each worker (cpu, cuda, cuda:N)", "cpu"),
        DeviceOptions.DType,
        new("out", "LOCATION", "where the pipeline runs write (default: a temporary folder, removed after); <out>/p<N> per run"),
        new("skip-loop", null, "skip the plain loop (no overhead figure)"),
        new("json", null, "print the figures as JSON"),
        DeviceOptions.LibTorch,
        new("random-weights", "SHAPE", "benchmark a wider model with random weights instead of --model's weights, keeping --model's tokenizer, image " +
            "processor and image geometry: text=HIDDENxLAYERS[,vision=HIDDENxLAYERS], e.g. text=1024x8,vision=512x4 (heads of 64 dims)"),
    ];

    public static string Description { get; } = """
        Measures what the distributed pipeline costs over a plain loop. The manifest's accepted
        examples are repeated (new ids) to --examples. First a plain single-process loop runs
        ExampleAnalyzer (the hooked pass and the statistics, nothing kept) over them with the same
        options; then, for each --processes count, that many worker silo processes (this build's
        silo command, localhost clustering, model preloaded, --torch-threads each) run the same
        examples as one job: leases, rows, Parquet parts, exactly-once commits, then the
        aggregates. --random-weights swaps in a wider model (random weights, same tokenizer and
        image geometry), to see the fixed costs of the pipeline against a per-example compute closer
        to a real model's. Reported: examples/s of the loop and of the pipeline (submit to the last shard
        committed; finalization timed apart), the overhead 1 - pipeline/loop (the target is under
        10%; with N processes against N loops' throughput), the CPU time per example of the loop
        and of the worker processes (steadier than wall time on a shared machine), and resident memory (VmRSS) of the loop
        and of every worker process at 10% and at 100% of the examples, with the peak (VmHWM).
        """;

    public static string Examples { get; } = """
          ./llavamech bench-pipeline --model tests/fixtures/tiny-llava-mha --dataset datasets/shapes-colors-mini/manifest.jsonl --examples 2000 --processes 1,2
          ./llavamech bench-pipeline --model tests/fixtures/tiny-llava-mha --dataset datasets/shapes-colors-mini/manifest.jsonl --examples 300 --warmup 16 --random-weights text=1024x8,vision=512x4
        """;

    public static int Run(CommandLine cl)
    {
        TorchRuntime.UseLibTorchFrom(cl.Get("libtorch"));
        int n = cl.GetInt("examples"), threads = cl.GetInt("torch-threads"), shardSize = cl.GetInt("shard-size"), warmup = cl.GetInt("warmup");
        if (warmup < 0) throw new UsageException("--warmup must be >= 0");
        if (n < 10) throw new UsageException("--examples must be at least 10");
        if (threads < 0) throw new UsageException("--torch-threads must be >= 0");
        var processCounts = cl.Require("processes").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => int.TryParse(p, out int v) && v is >= 1 and <= 16 ? v : throw new UsageException($"--processes: '{p}' is not a count 1-16")).ToList();
        string model = Path.GetFullPath(cl.Require("model"));
        string dataset = Path.GetFullPath(cl.Require("dataset"));
        if (!File.Exists(dataset)) throw new UsageException($"--dataset: '{dataset}' does not exist");
        string device = cl.Require("device"), dtype = cl.Require("dtype");
        var options = new JobOptions { ShardSize = shardSize, Analysis = SettingsOptions.Bind<AnalysisSettings>(cl), DType = dtype, LeaseSeconds = 120 };
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }

        var settings = new PipelineBenchmarkSettings(model, dataset, n, processCounts, warmup, threads, shardSize, device, dtype, options, cl.Get("out"),
            cl.Flag("skip-loop"), cl.Get("random-weights"));
        var results = PipelineBenchmark.Run(settings, SelfStartInfo, Console.Error.WriteLine);
        Console.WriteLine(PipelineBenchmark.Format(results, cl.Flag("json"), threads, device, rows => Json.Serialize(rows, indented: true)));
        return 0;
    }

    /// <summary>This build's CLI as a child process: "dotnet llavamech.dll" or the app host.</summary>
    private static ProcessStartInfo SelfStartInfo()
    {
        string dll = typeof(BenchPipelineCommand).Assembly.Location;
        string host = Environment.ProcessPath ?? "dotnet";
        var psi = new ProcessStartInfo(host) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") psi.ArgumentList.Add(dll);
        return psi;
    }
}
