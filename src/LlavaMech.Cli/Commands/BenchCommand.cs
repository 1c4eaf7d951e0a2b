using LlavaMech.Runtime.Benchmarks;

namespace LlavaMech.Cli.Commands;

/// <summary><c>bench</c>: parses the options of <see cref="ForwardBenchmark"/> and prints its figures.</summary>
public sealed class BenchCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("model", "DIR", "a checkpoint folder to benchmark (e.g. tests/fixtures/tiny-llava-mha)"),
        new("config", "FILE", "a config.json to instantiate with random weights instead (e.g. the llava-1.5-7b-hf config)"),
        new("layers", "N", "with --config: keep only N decoder layers (0 = as configured)", "2") { Range = CommandLine.NumericRange.Int(0, 1024) },
        new("vision-layers", "N", "with --config: keep only N CLIP layers (0 = as configured)", "0") { Range = CommandLine.NumericRange.Int(0, 1024) },
        new("iterations", "N", "timed passes per mode (interleaved, median reported), after a warm-up pass of each", "5") { Range = CommandLine.NumericRange.Int(1, 100_000) },
        new("examples", "N", "consecutive hooked examples for the memory run (0 = skip)", "500") { Range = CommandLine.NumericRange.Int(0, 10_000_000) },
        new("threads", "N", "torch intra-op threads (0 = library default)", "0") { Range = CommandLine.NumericRange.Int(0, 4096) },
        new("analysis", null, "also time the statistics and every attribution method on the same input"),
        new("screen-k", "K", "with --analysis: exact neuron scores for the K best first-order candidates (screened route)", "1024") { Range = CommandLine.NumericRange.Int(1, 1 << 24) },
        new("ig-steps", "N", "with --analysis: integrated-gradients steps", "20") { Range = CommandLine.NumericRange.Int(1, 10_000) },
        new("occlusion-patches", "N", "with --analysis: time occlusion on N patches and extrapolate to all (0 = all)", "0") { Range = CommandLine.NumericRange.Int(0, 1 << 20) },
        new("batch-size", "B", "with --analysis: batch of the intervention passes (IG steps, occluded copies)", "16") { Range = CommandLine.NumericRange.Int(1, 4096) },
        new("questions", "Q,Q,..", "also time the pipeline's analysis with --prefix-reuse on and off at Q questions per image (e.g. 1,2,5,10), with the cost model"),
        new("images", "N", "with --questions: images per measurement", "2") { Range = CommandLine.NumericRange.Int(1, 100_000) },
        new("json", null, "print figures as JSON"),
        .. DeviceOptions.Specs,
    ];

    public static string Description { get; } = """
        Measures, on one model and input shape: milliseconds per example of a plain forward pass
        (fused attention, nothing kept) and of a hooked pass that keeps everything the paper's
        statistics need at the last position (residual stream, attention and MLP outputs, MLP
        coefficients, last query row of every pattern, values); then resident memory over many
        consecutive hooked examples (growth from example 50 to the last should be ~0).
        With --config the model is built at that config's shapes with random weights, e.g. the
        published llava-1.5-7b config cut to 2 decoder layers. With --questions: the pipeline's examples/s
        with prefix reuse on and off (on fresh readout directions, then warm after other images), peak
        memory, each phase's ms per question, and the cost model (README: "Prefix reuse").
        """;

    public static string Examples { get; } = """
          ./llavamech bench --model tests/fixtures/tiny-llava-mha
          ./llavamech bench --config tests/fixtures/llava-1.5-7b-hf/config.json --layers 2 --examples 20
          ./llavamech bench --model datasets/shapes-colors-mini/toy-llava --questions 1,2,5,10 --iterations 1 --examples 0
        """;

    public static int Run(CommandLine cl)
    {
        var options = DeviceOptions.Apply(cl);
        int threads = cl.GetInt("threads");
        if (threads > 0) TorchSharp.torch.set_num_threads(threads);
        int iterations = cl.GetInt("iterations"), examples = cl.GetInt("examples");
        var (loaded, what) = ForwardBenchmark.LoadModel(cl.Get("model"), cl.Get("config"), cl.GetInt("layers"), cl.GetInt("vision-layers"), options);
        using var model = loaded;
        var bench = new ForwardBenchmark();
        var memoryBar = examples > 0 ? new ProgressBar("memory run", examples) : null;
        bench.RunPasses(model, what, iterations, examples, Console.Error.WriteLine, memoryBar);
        memoryBar?.Done();
        foreach (var line in bench.Lines) Console.WriteLine(line);
        if (cl.Flag("analysis"))
        {
            int printed = bench.Lines.Count;
            bench.RunAnalysis(model, iterations, new AnalysisBenchmarkSettings(cl.GetInt("screen-k"), cl.GetInt("ig-steps"), cl.GetInt("occlusion-patches"), cl.GetInt("batch-size")));
            foreach (var line in bench.Lines.Skip(printed)) Console.WriteLine(line);
        }
        if (cl.Get("questions") is { } questions)
        {
            var reuse = new PrefixReuseBenchmark();
            reuse.Run(model, PrefixReuseBenchmark.ParseQuestions(questions), cl.GetInt("images"),
                new Runtime.AnalysisSettings(), Console.Error.WriteLine, iterations);
            reuse.Lines.ForEach(Console.WriteLine);
            bench.Figures["prefix_reuse"] = reuse.Figures;
        }
        if (cl.Flag("json")) Console.WriteLine(Json.Serialize(bench.Figures, indented: true));
        return 0;
    }
}
