using LlavaMech.Reports;
using System.Diagnostics;
using System.Text.Json;
using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Analysis;
using LlavaMech.Explanation;
using static TorchSharp.torch;

namespace LlavaMech.Cli.Commands;

/// <summary><c>bench</c>: plain vs hooked forward passes, and resident memory over many consecutive examples.</summary>
public static class BenchCommand
{
    public static readonly CommandLine.OptionSpec[] Specs =
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
        new("json", null, "print figures as JSON"),
        .. DeviceOptions.Specs,
    ];

    public const string Description = """
        Measures, on one model and input shape: milliseconds per example of a plain forward pass
        (fused attention, nothing kept) and of a hooked pass that keeps everything the paper's
        statistics need at the last position (residual stream, attention and MLP outputs, MLP
        coefficients, last query row of every pattern, values); then resident memory over many
        consecutive hooked examples (growth from example 50 to the last should be ~0).
        With --config the model is built at that config's shapes with random weights, e.g. the
        published llava-1.5-7b config cut to 2 decoder layers.
        """;

    public const string Examples = """
          ./llavamech bench --model tests/fixtures/tiny-llava-mha
          ./llavamech bench --config tests/fixtures/llava-1.5-7b-hf/config.json --layers 2 --examples 20
        """;

    public static int Run(CommandLine cl)
    {
        var options = DeviceOptions.Apply(cl);
        int threads = cl.GetInt("threads");
        if (threads > 0) set_num_threads(threads);
        int iterations = cl.GetInt("iterations"), examples = cl.GetInt("examples");

        LoadedModel loaded;
        string what;
        if (cl.Get("model") is { } dir)
        {
            loaded = LoadedModel.Load(dir, options);
            what = dir;
        }
        else if (cl.Get("config") is { } configPath)
        {
            var config = ModelConfig.Load(configPath);
            int layers = cl.GetInt("layers"), visionLayers = cl.GetInt("vision-layers");
            if (layers > 0) config = config with { Text = config.Text with { NumHiddenLayers = layers } };
            if (visionLayers > 0) config = config with { Vision = config.Vision! with { NumHiddenLayers = visionLayers } };
            loaded = LoadedModel.CreateRandom(config, options, seed: 1);
            what = $"{configPath} with random weights, {config.Text.NumHiddenLayers} decoder layers, {config.Vision!.NumHiddenLayers} CLIP layers";
        }
        else throw new UsageException("give --model DIR or --config FILE");
        using var model = loaded;
        var llava = model.Llava ?? throw new UsageException("bench needs a Llava model (with a vision tower)");

        var c = llava.Config;
        var dev = llava.parameters().First().device;
        // A realistic VQA prompt: BOS, a few text tokens, the image tokens, the question.
        int textTokens = 40, imageTokens = c.ImageSeqLength;
        var idsArr = new long[textTokens + imageTokens];
        var rng = new Random(0);
        for (int i = 0; i < idsArr.Length; i++) idsArr[i] = rng.Next(3, Math.Min(c.Text.VocabSize, c.ImageTokenId));
        idsArr[0] = c.Text.BosTokenId;
        for (int i = 0; i < imageTokens; i++) idsArr[5 + i] = c.ImageTokenId;
        using var ids = tensor(idsArr, device: dev).unsqueeze(0);
        int side = c.Vision!.ImageSize;
        using var pixels = randn(1, 3, side, side, device: dev);
        var plan = CapturePlan.ForLastPositionAnalysis(c.Text.NumHiddenLayers, hasVision: true);

        double Pass(bool hooked)
        {
            using var scope = NewDisposeScope();
            using var mode = inference_mode();
            using var cache = hooked ? new ActivationCache(plan) : null;
            var sw = Stopwatch.StartNew();
            _ = llava.Forward(ids, pixels, cache).sum().item<float>(); // item() waits for the device
            return sw.Elapsed.TotalMilliseconds;
        }

        Console.Error.WriteLine($"bench: {what}; {idsArr.Length} tokens ({imageTokens} image); {dev}, {llava.parameters().First().dtype}; {get_num_threads()} threads");
        Pass(false); Pass(true);   // warm-up: allocator, kernels, first-call paths
        // Interleaved, so drift in machine load hits both modes alike; medians resist outliers.
        var plainMs = new List<double>(); var hookedMs = new List<double>();
        for (int i = 0; i < iterations; i++) { plainMs.Add(Pass(false)); hookedMs.Add(Pass(true)); }
        double plain = Median(plainMs), hooked = Median(hookedMs);
        double overhead = hooked / plain - 1;

        long rss50 = 0, rssEnd = 0;
        if (examples > 0)
        {
            var progress = new ProgressBar("memory run", examples);
            for (int i = 1; i <= examples; i++)
            {
                using (var scope = NewDisposeScope())
                using (var mode = inference_mode())
                using (var cache = new ActivationCache(plan))
                {
                    _ = llava.Forward(ids, pixels, cache).sum().item<float>();
                }
                if (i == Math.Min(50, examples)) rss50 = ResourceUsage.ResidentBytes();
                progress.Report(i);
            }
            progress.Done();
            rssEnd = ResourceUsage.ResidentBytes();
        }
        long peak = ResourceUsage.PeakResidentBytes();
        double growth = rss50 > 0 ? (double)(rssEnd - rss50) / rss50 : 0;

        var figures = new Dictionary<string, object?>
        {
            ["model"] = what,
            ["tokens"] = idsArr.Length,
            ["image_tokens"] = imageTokens,
            ["device"] = dev.ToString(),
            ["dtype"] = model.DType.ToString(),
            ["threads"] = get_num_threads(),
            ["plain_ms"] = Math.Round(plain, 2),
            ["hooked_ms"] = Math.Round(hooked, 2),
            ["hooked_overhead"] = Math.Round(overhead, 4),
            ["memory_examples"] = examples,
            ["rss_at_50_mib"] = Math.Round(rss50 / 1048576.0, 1),
            ["rss_at_end_mib"] = Math.Round(rssEnd / 1048576.0, 1),
            ["rss_growth_50_to_end"] = Math.Round(growth, 4),
            ["peak_rss_mib"] = Math.Round(peak / 1048576.0, 1),
        };
        Console.WriteLine($"plain forward     {plain,10:0.00} ms/example");
        Console.WriteLine($"hooked forward    {hooked,10:0.00} ms/example  ({SignedNumber.Percent(overhead)} over plain)");
        if (examples > 0)
            Console.WriteLine($"resident memory   {ResourceUsage.Mib(rss50)} at example {Math.Min(50, examples)}, {ResourceUsage.Mib(rssEnd)} at {examples} ({SignedNumber.Percent(growth)}); peak {ResourceUsage.Mib(peak)}");
        if (cl.Flag("analysis")) AnalysisBench(cl, model, idsArr, imageTokens, plain, figures);
        if (cl.Flag("json")) Console.WriteLine(Json.Serialize(figures, indented: true));
        return 0;
    }

    /// <summary>
    /// Times, on the same input: the default statistics (layers, all heads, top-3 heads' positions,
    /// all neurons, logit lens of the visual tokens), the log-increase heatmap alone, and each
    /// attribution baseline; medians over --iterations.
    /// </summary>
    private static void AnalysisBench(CommandLine cl, LoadedModel model, long[] ids, int imageTokens, double plainMs, Dictionary<string, object?> figures)
    {
        int iterations = Math.Max(1, cl.GetInt("iterations"));
        var c = model.Config;
        int side = c.Vision!.ImageSize;
        var pixels = new float[3 * side * side];
        var rng = new Random(3);
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (float)(rng.NextDouble() * 2 - 1);
        var geometry = new Processing.ImageGeometry(side, side, side, side, 0, 0, side, side);
        var input = new ModelInput(ids, pixels, LlavaImageLayout.For(c, 5), new Processing.PreprocessedImage(pixels, geometry, new byte[side * side * 3]), "(random ids)", null);
        using var analyzer = new ExampleAnalyzer(model);
        var neurons = new NeuronOptions(NeuronRoute.Auto, cl.GetInt("screen-k"));

        double Median(Func<double> f)
        {
            f();   // warm-up
            var xs = Enumerable.Range(0, iterations).Select(_ => f()).OrderBy(x => x).ToList();
            return xs[xs.Count / 2];
        }
        ExampleAnalysis? last = null;
        double full = Median(() => { using var s = NewDisposeScope(); last = analyzer.Analyze(input, new StatisticsOptions { Neurons = neurons }); return last.StatisticsMs; });
        string route = last!.Statistics.Neurons?.Route.ToString() ?? "none";
        var timings = last.Statistics.TimingsMs;
        double heatmap = Median(() => { using var s = NewDisposeScope(); var a = analyzer.Analyze(input, new StatisticsOptions { Neurons = new NeuronOptions(NeuronRoute.None) }); return a.StatisticsMs; });
        double hookedForward = last.ForwardMs;

        using var scope = NewDisposeScope();
        var ctx = new ImageTokenAttribution(model, input, last.Statistics.TargetId, batchSize: cl.GetInt("batch-size"));
        var sw = new Stopwatch();
        double Time(Action a) => Median(() => { sw.Restart(); a(); return sw.Elapsed.TotalMilliseconds; });
        double gxi = Time(() => ctx.GradientTimesInput());
        int igSteps = cl.GetInt("ig-steps");
        double ig = Median(() => { sw.Restart(); ctx.IntegratedGradients(igSteps); return sw.Elapsed.TotalMilliseconds; });
        int occN = cl.GetInt("occlusion-patches");
        double occlusion;
        if (occN <= 0 || occN >= imageTokens) { sw.Restart(); ctx.Occlusion(); occlusion = sw.Elapsed.TotalMilliseconds; occN = imageTokens; }
        else
        {
            // Occlusion costs one pass per patch: time a sample of patches and scale.
            var mask = zeros(occN, imageTokens, dtype: ScalarType.Bool, device: model.Device);
            for (int i = 0; i < occN; i++) mask[i, i] = true;
            sw.Restart(); ctx.TargetLogProbs(ctx.WithPatchesRemoved(mask)); occlusion = sw.Elapsed.TotalMilliseconds * imageTokens / occN;
        }
        double tool = hookedForward + heatmap;
        figures["statistics_ms"] = Math.Round(full, 2);
        figures["statistics_neuron_route"] = route;
        figures["statistics_part_ms"] = timings;
        figures["statistics_over_forward"] = Math.Round(full / plainMs, 3);
        figures["heatmap_statistics_ms"] = Math.Round(heatmap, 2);
        figures["log_increase_heatmap_total_ms"] = Math.Round(tool, 2);
        figures["gradient_x_input_ms"] = Math.Round(gxi, 2);
        figures["integrated_gradients_ms"] = Math.Round(ig, 2);
        figures["integrated_gradients_steps"] = igSteps;
        figures["occlusion_ms"] = Math.Round(occlusion, 1);
        figures["occlusion_patches_timed"] = occN;
        figures["occlusion_over_heatmap"] = Math.Round(occlusion / tool, 2);
        Console.WriteLine($"statistics        {full,10:0.00} ms/example  ({full / plainMs:0.00}x the plain forward; neurons: {route}; {string.Join(", ", timings.Select(t => $"{t.Key} {t.Value:0}"))})");
        Console.WriteLine($"heatmap stats     {heatmap,10:0.00} ms/example  (layers, heads, top-3 positions; + hooked forward = {tool:0.0} ms for the log-increase heatmap)");
        Console.WriteLine($"gradient x input  {gxi,10:0.00} ms/example");
        Console.WriteLine($"integrated grads  {ig,10:0.00} ms/example  ({igSteps} steps)");
        Console.WriteLine($"occlusion         {occlusion,10:0.0} ms/example  ({imageTokens} patches{(occN < imageTokens ? $", extrapolated from {occN}" : "")}; {occlusion / tool:0.0}x the log-increase heatmap)");
    }
    private static double Median(List<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
