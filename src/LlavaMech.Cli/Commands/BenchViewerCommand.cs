using LlavaMech.Viewer;

namespace LlavaMech.Cli.Commands;

/// <summary><c>bench-viewer</c>: parses the options and runs <see cref="ViewerBenchmark"/>.</summary>
public sealed class BenchViewerCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("run", "DIR", "a finished local run whose rows are replicated", Required: true),
        new("out", "DIR", "new folder for the replicated run (kept)", Required: true),
        new("examples", "N", "examples in the replicated run", "20000") { Range = CommandLine.NumericRange.Int(1, 100_000_000) },
        new("shard-size", "N", "examples per committed shard", "512") { Range = CommandLine.NumericRange.Int(1, 10_000_000) },
        new("samples", "N", "requests per page", "20") { Range = CommandLine.NumericRange.Int(1, 10_000) },
    ];

    public static string Description { get; } = """
        Latency of the viewer (serve) on a large run: replicates the rows of a real run with DuckDB
        into a run of --examples examples (committed shards in the run layout), serves it on a free
        loopback port and times full HTTP requests: the first page (the first request is cold), an
        example page and its JSON, the examples list, the wrong answers, the heads.
        """;

    public static string Examples { get; } = """
          ./llavamech bench-viewer --run out/demo --out /tmp/viewer-20k --examples 20000
        """;

    public static int Run(CommandLine cl)
    {
        ViewerBenchmark.RunAsync(cl.Require("run"), cl.Require("out"), cl.GetInt("examples"), cl.GetInt("shard-size"), cl.GetInt("samples"), Console.WriteLine)
            .GetAwaiter().GetResult();
        return 0;
    }
}
