using LlavaMech.Viewer;

namespace LlavaMech.Cli.Commands;

/// <summary><c>serve</c>: parses the options and runs the viewer (<see cref="ViewerServer"/>) until Ctrl+C or SIGTERM.</summary>
public sealed class ServeCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("run", "RUN", "the run: its output folder, az://container/prefix or https blob URL (finished or still running)", Required: true),
        new("port", "N", "TCP port (0: a free one)", "8080") { Range = CommandLine.NumericRange.Int(0, 65535) },
        new("host", "ADDR", "address to bind; anything but loopback exposes the run to the network (there is no authentication)", "127.0.0.1"),
        new("model", "DIR", "a LLaVA checkpoint: adds /explain (upload an image and a prompt, click a head to ablate it)"),
    ];

    public static string Description { get; } = """
        A read-only web viewer over one run, reading its Parquet tables in place with DuckDB:
        /  model, fingerprint, examples per task, accuracy, rejects, top heads, head grid and layer
           profile per task side by side, causal effects, links to the wrong answers;
        /examples (task, correct, target, text; paged) and /examples/{id}: the image with switchable
           overlays (log-increase top head, top-k heads, raw attention, any head clicked in the head
           grid), layer bars, the logit lens over the patch grid, the last token's attention over
           the prompt positions, causal effects;
        JSON: /api/summary, /api/examples?task=&correct=&limit=&offset=, /api/examples/{id},
           /api/heads?task=; /diff?a=RUN&b=RUN between the runs of a reanalyze root;
        with --model, /explain: an uploaded image explained, a clicked head ablated.
        It serves only images that the run's manifest references (by example id), refuses any
        request path with '..', and binds to loopback unless --host says otherwise.
        """;

    public static string Examples { get; } = """
          ./llavamech serve --run out/demo
          ./llavamech serve --run az://nightly/eval/fp-3f2a9c1d0b7e41aa --port 9000
        """;

    public static int Run(CommandLine cl)
    {
        string host = cl.Require("host");
        if (!ViewerServer.IsLoopback(host))
            Console.Error.WriteLine($"llavamech serve: WARNING: --host {host} is not a loopback address: anyone who can reach it can read this run (no authentication)");
        using var stop = new CancellationTokenSource();
        return ViewerServer.ServeAsync(new ViewerOptions(cl.Require("run"), host, cl.GetInt("port"), cl.Get("model")), Console.Error.WriteLine, stop.Token).GetAwaiter().GetResult();
    }
}
