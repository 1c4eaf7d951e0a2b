using System.Diagnostics;
using LlavaMech.Analysis;
using LlavaMech.Checkpoints;
using LlavaMech.Explanation;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Reports;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Benchmarks;

/// <summary>What <c>bench --analysis</c> times beside the passes.</summary>
public sealed record AnalysisBenchmarkSettings(int ScreenK, int IgSteps, int OcclusionPatches, int BatchSize);

/// <summary>
/// <c>bench</c>: plain vs hooked forward passes, resident memory over many consecutive hooked examples, and optionally
/// the statistics and every attribution method on the same input. Figures go into <see cref="Figures"/> (the JSON of
/// <c>--json</c>), their readable form into <see cref="Lines"/>.
/// </summary>
public sealed class ForwardBenchmark
{
    public Dictionary<string, object?> Figures { get; } = new();
    public List<string> Lines { get; } = new();

    /// <summary>
    /// The model of <paramref name="modelDir"/>, or else the config of <paramref name="configPath"/> with random weights cut to
    /// <paramref name="layers"/> decoder and <paramref name="visionLayers"/> CLIP layers (0 = as configured); also its description.
    /// </summary>
    public static (LoadedModel Model, string What) LoadModel(string? modelDir, string? configPath, int layers, int visionLayers, ModelLoadOptions options)
    {
        if (modelDir is not null) return (LoadedModel.Load(modelDir, options), modelDir);
        if (configPath is null) throw new InvalidOptionException("give --model DIR or --config FILE");
        var config = ModelConfig.Load(configPath);
        if (layers > 0) config = config with { Text = config.Text with { NumHiddenLayers = layers } };
        if (visionLayers > 0) config = config with { Vision = config.Vision! with { NumHiddenLayers = visionLayers } };
        return (LoadedModel.CreateRandom(config, options, seed: 1),
            $"{configPath} with random weights, {config.Text.NumHiddenLayers} decoder layers, {config.Vision!.NumHiddenLayers} CLIP layers");
    }

    /// <summary>
    /// Times plain and hooked passes of <paramref name="model"/> on a VQA-shaped input (interleaved, medians over
    /// <paramref name="iterations"/> after a warm-up of each), then resident memory over <paramref name="examples"/>
    /// consecutive hooked examples (0 = skip). Returns the plain pass's milliseconds.
    /// </summary>
    public double RunPasses(LoadedModel model, string what, int iterations, int examples, Action<string> log, IProgress<int>? memoryProgress = null)
    {
        if (!model.HasVision) throw new InvalidOptionException("bench needs a Llava model (with a vision tower)");

        var c = model.Config;
        var dev = model.Device;
        // A realistic VQA prompt: BOS, a few text tokens, the image tokens, the question. The image is the family's:
        // LLaVA-1.5's one crop, LLaVA-NeXT's tiles of a 640 x 427 photo (2,144 image tokens at llava-v1.6 shapes).
        var image = RandomImage(model, 3);
        int textTokens = 40, imageTokens = model.DecoderFamily.ImageTokens(c, image);
        var idsArr = new long[textTokens + imageTokens];
        var rng = new Random(0);
        for (int i = 0; i < idsArr.Length; i++) idsArr[i] = rng.Next(3, Math.Min(c.Text.VocabSize, c.ImageTokenId));
        idsArr[0] = c.Text.BosTokenId;
        for (int i = 0; i < imageTokens; i++) idsArr[5 + i] = c.ImageTokenId;
        var input = new ModelInput(idsArr, image.PixelValues, model.DecoderFamily.ImageLayout(c, 5, image), image, "(random ids)", null);
        var (ids, pixels) = model.ToTensors(input);
        using var idsScope = ids;
        using var pixelsScope = pixels;
        ImageTokenLayout?[] layouts = [input.ImageLayout];
        var plan = CapturePlan.ForLastPositionAnalysis(c.Text.NumHiddenLayers, hasVision: true);

        double Pass(bool hooked)
        {
            using var scope = NewDisposeScope();
            using var mode = inference_mode();
            using var cache = hooked ? new ActivationCache(plan) : null;
            var sw = Stopwatch.StartNew();
            _ = model.Forward(ids, pixels, cache, null, layouts).sum().item<float>(); // item() waits for the device
            return sw.Elapsed.TotalMilliseconds;
        }

        log($"bench: {what}; {idsArr.Length} tokens ({imageTokens} image{(image.Tiles > 1 ? $", {image.Tiles} tiles" : "")}); {dev}, {model.DType}; {get_num_threads()} threads");
        Pass(false); Pass(true);   // warm-up: allocator, kernels, first-call paths
        // Interleaved, so drift in machine load hits both modes alike; medians resist outliers.
        var plainMs = new List<double>(); var hookedMs = new List<double>();
        for (int i = 0; i < iterations; i++) { plainMs.Add(Pass(false)); hookedMs.Add(Pass(true)); }
        double plain = Median(plainMs), hooked = Median(hookedMs);
        double overhead = hooked / plain - 1;

        long rss50 = 0, rssEnd = 0;
        if (examples > 0)
        {
            for (int i = 1; i <= examples; i++)
            {
                using (var scope = NewDisposeScope())
                using (var mode = inference_mode())
                using (var cache = new ActivationCache(plan))
                {
                    _ = model.Forward(ids, pixels, cache, null, layouts).sum().item<float>();
                }
                if (i == Math.Min(50, examples)) rss50 = ResourceUsage.ResidentBytes();
                memoryProgress?.Report(i);
            }
            rssEnd = ResourceUsage.ResidentBytes();
        }
        long peak = ResourceUsage.PeakResidentBytes();
        double growth = rss50 > 0 ? (double)(rssEnd - rss50) / rss50 : 0;

        foreach (var (key, value) in new Dictionary<string, object?>
        {
            ["model"] = what,
            ["tokens"] = idsArr.Length,
            ["image_tokens"] = imageTokens,
            ["image_tiles"] = image.Tiles,
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
        }) Figures[key] = value;
        Lines.Add($"plain forward     {plain,10:0.00} ms/example");
        Lines.Add($"hooked forward    {hooked,10:0.00} ms/example  ({SignedNumber.Percent(overhead)} over plain)");
        if (examples > 0)
            Lines.Add($"resident memory   {ResourceUsage.Mib(rss50)} at example {Math.Min(50, examples)}, {ResourceUsage.Mib(rssEnd)} at {examples} ({SignedNumber.Percent(growth)}); peak {ResourceUsage.Mib(peak)}");
        _ids = idsArr;
        _input = input;
        _imageTokens = imageTokens;
        _plainMs = plain;
        return plain;
    }

    private long[] _ids = [];
    private ModelInput? _input;

    /// <summary>Random pixels of the model family's image: one crop (LLaVA-1.5), or the tiles of a 640 x 427 photo (LLaVA-NeXT).</summary>
    internal static Processing.PreprocessedImage RandomImage(LoadedModel model, int seed)
    {
        var c = model.Config;
        int side = c.Vision!.ImageSize;
        var plan = c.ImageGridPinpoints is { } pins ? Processing.AnyresPlan.For(640, 427, side, c.Vision.PatchSize, pins) : null;
        int tiles = plan?.Tiles ?? 1;
        var pixels = new float[(long)tiles * 3 * side * side];
        var rng = new Random(seed);
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (float)(rng.NextDouble() * 2 - 1);
        var geometry = new Processing.ImageGeometry(plan?.ImageWidth ?? side, plan?.ImageHeight ?? side, side, side, 0, 0, side, side);
        return new Processing.PreprocessedImage(pixels, geometry, new byte[side * side * 3]) { Tiles = tiles, Anyres = plan };
    }
    private int _imageTokens;
    private double _plainMs;

    /// <summary>
    /// Times, on the same input: the default statistics (layers, all heads, top-3 heads' positions,
    /// all neurons, logit lens of the visual tokens), the log-increase heatmap alone, and each
    /// attribution baseline; medians over --iterations.
    /// </summary>
    /// <remarks>Runs after <see cref="RunPasses"/>, on its input.</remarks>
    public void RunAnalysis(LoadedModel model, int iterations, AnalysisBenchmarkSettings settings)
    {
        iterations = Math.Max(1, iterations);
        long[] ids = _ids;
        int imageTokens = _imageTokens;
        double plainMs = _plainMs;
        var input = _input ?? throw new InvalidOperationException("RunAnalysis runs after RunPasses, on its input");
        using var analyzer = new ExampleAnalyzer(model);
        var neurons = new NeuronOptions(NeuronRoute.Auto, settings.ScreenK);

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
        var ctx = new ImageTokenAttribution(model, input, last.Statistics.TargetId, batchSize: settings.BatchSize);
        var sw = new Stopwatch();
        double Time(Action a) => Median(() => { sw.Restart(); a(); return sw.Elapsed.TotalMilliseconds; });
        double gxi = Time(() => ctx.GradientTimesInput());
        int igSteps = settings.IgSteps;
        double ig = Median(() => { sw.Restart(); ctx.IntegratedGradients(igSteps); return sw.Elapsed.TotalMilliseconds; });
        int occN = settings.OcclusionPatches;
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
        Figures["statistics_ms"] = Math.Round(full, 2);
        Figures["statistics_neuron_route"] = route;
        Figures["statistics_part_ms"] = timings;
        Figures["statistics_over_forward"] = Math.Round(full / plainMs, 3);
        Figures["heatmap_statistics_ms"] = Math.Round(heatmap, 2);
        Figures["log_increase_heatmap_total_ms"] = Math.Round(tool, 2);
        Figures["gradient_x_input_ms"] = Math.Round(gxi, 2);
        Figures["integrated_gradients_ms"] = Math.Round(ig, 2);
        Figures["integrated_gradients_steps"] = igSteps;
        Figures["occlusion_ms"] = Math.Round(occlusion, 1);
        Figures["occlusion_patches_timed"] = occN;
        Figures["occlusion_over_heatmap"] = Math.Round(occlusion / tool, 2);
        Lines.Add($"statistics        {full,10:0.00} ms/example  ({full / plainMs:0.00}x the plain forward; neurons: {route}; {string.Join(", ", timings.Select(t => $"{t.Key} {t.Value:0}"))})");
        Lines.Add($"heatmap stats     {heatmap,10:0.00} ms/example  (layers, heads, top-3 positions; + hooked forward = {tool:0.0} ms for the log-increase heatmap)");
        Lines.Add($"gradient x input  {gxi,10:0.00} ms/example");
        Lines.Add($"integrated grads  {ig,10:0.00} ms/example  ({igSteps} steps)");
        Lines.Add($"occlusion         {occlusion,10:0.0} ms/example  ({imageTokens} patches{(occN < imageTokens ? $", extrapolated from {occN}" : "")}; {occlusion / tool:0.0}x the log-increase heatmap)");
    }
    private static double Median(List<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
