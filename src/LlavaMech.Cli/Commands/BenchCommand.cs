using System.Diagnostics;
using System.Text.Json;
using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Model.Loading;
using static TorchSharp.torch;

namespace LlavaMech.Cli.Commands;

/// <summary><c>bench</c>: plain vs hooked forward passes, and resident memory over many consecutive examples.</summary>
public static class BenchCommand
{
    public static readonly CommandLine.OptionSpec[] Specs =
    [
        new("model", "DIR", "a checkpoint folder to benchmark (e.g. tests/fixtures/tiny-llava-mha)"),
        new("config", "FILE", "a config.json to instantiate with random weights instead (e.g. the llava-1.5-7b-hf config)"),
        new("layers", "N", "with --config: keep only N decoder layers (0 = as configured)", "2"),
        new("vision-layers", "N", "with --config: keep only N CLIP layers (0 = as configured)", "0"),
        new("iterations", "N", "timed passes per mode (interleaved, median reported), after a warm-up pass of each", "5"),
        new("examples", "N", "consecutive hooked examples for the memory run (0 = skip)", "500"),
        new("threads", "N", "torch intra-op threads (0 = library default)", "0"),
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

        LoadedModel? loaded = null;
        LlavaForConditionalGeneration llava;
        string what;
        if (cl.Get("model") is { } dir)
        {
            loaded = LoadedModel.Load(dir, options);
            llava = loaded.Llava ?? throw new UsageException("bench needs a Llava model (with a vision tower)");
            what = dir;
        }
        else if (cl.Get("config") is { } configPath)
        {
            var config = ModelConfig.Parse(File.ReadAllText(configPath), configPath);
            int layers = cl.GetInt("layers"), visionLayers = cl.GetInt("vision-layers");
            if (layers > 0) config = config with { Text = config.Text with { NumHiddenLayers = layers } };
            if (visionLayers > 0) config = config with { Vision = config.Vision! with { NumHiddenLayers = visionLayers } };
            var device = Model.Devices.TorchRuntime.ResolveDevice(options.Device);
            var dtype = Model.Devices.TorchRuntime.ResolveDType(options.DType, device);
            llava = new LlavaForConditionalGeneration(config, device, dtype);
            llava.eval();
            RandomWeights.Fill(llava, seed: 1);
            what = $"{configPath} with random weights, {config.Text.NumHiddenLayers} decoder layers, {config.Vision!.NumHiddenLayers} CLIP layers";
        }
        else throw new UsageException("give --model DIR or --config FILE");

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

        var figures = new
        {
            model = what,
            tokens = idsArr.Length,
            image_tokens = imageTokens,
            device = dev.ToString(),
            threads = get_num_threads(),
            plain_ms = Math.Round(plain, 2),
            hooked_ms = Math.Round(hooked, 2),
            hooked_overhead = Math.Round(overhead, 4),
            memory_examples = examples,
            rss_at_50_mib = Math.Round(rss50 / 1048576.0, 1),
            rss_at_end_mib = Math.Round(rssEnd / 1048576.0, 1),
            rss_growth_50_to_end = Math.Round(growth, 4),
            peak_rss_mib = Math.Round(peak / 1048576.0, 1),
        };
        if (cl.Flag("json")) Console.WriteLine(JsonSerializer.Serialize(figures, Json.Indented));
        else
        {
            Console.WriteLine($"plain forward     {plain,10:0.00} ms/example");
            Console.WriteLine($"hooked forward    {hooked,10:0.00} ms/example  ({overhead:+0.0%;-0.0%} over plain)");
            if (examples > 0)
                Console.WriteLine($"resident memory   {ResourceUsage.Mib(rss50)} at example {Math.Min(50, examples)}, {ResourceUsage.Mib(rssEnd)} at {examples} ({growth:+0.0%;-0.0%}); peak {ResourceUsage.Mib(peak)}");
        }
        llava.Dispose();
        loaded?.Dispose();
        return 0;
    }

    private static double Median(List<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
