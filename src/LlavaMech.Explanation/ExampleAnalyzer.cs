using System.Diagnostics;
using LlavaMech.Analysis;
using LlavaMech.Hooks;
using LlavaMech.Model;
using static TorchSharp.torch;

namespace LlavaMech.Explanation;

/// <summary>One example's hooked pass and statistics, with wall times.</summary>
/// <param name="TopHeadAttention">for each of the statistics' top heads, its attention from the last position to every position [T].</param>
public sealed record ExampleAnalysis(ModelInput Input, ExampleStatistics Statistics, double ForwardMs, double StatisticsMs,
    IReadOnlyList<(int Layer, int Head, double[] Attention)> TopHeadAttention);

/// <summary>What one batch row's pass kept: the cache (index <see cref="Row"/> of its batch axis) and the last-position captures.</summary>
public sealed record RowCaptures(ActivationCache Cache, int Row, LastPositionActivations Activations);

/// <summary>
/// Runs the hooked pass that keeps what the statistics need at the last position, hands the
/// captures to the analysis library, and returns managed results. One per model; call from the
/// thread that owns the model (dispose scopes are per thread).
/// </summary>
public sealed class ExampleAnalyzer : IDisposable
{
    private readonly ReadoutWeights _weights;
    private readonly bool _ownsWeights;

    public ExampleAnalyzer(LoadedModel model)
    {
        Model = model;
        var c = model.Config.Text;
        var views = new ReadoutWeights(model.FinalNormWeight, model.LmHeadWeight, c.RmsNormEps, model.OProj, model.DownProj,
            c.NumAttentionHeads, c.NumKeyValueHeads);
        // Half-precision models read out in float32 (docs/METHOD.md, "Reference cost at full scale": the precision warning); convert once, not per example.
        _ownsWeights = model.DType != ScalarType.Float32;
        _weights = (_ownsWeights ? views.ConvertTo(ScalarType.Float32) : views) with
        {
            Directions = new UnembeddedDirections(UnembeddedDirections.DefaultBytes(model.Device)),
        };
    }

    public LoadedModel Model { get; }
    public ReadoutWeights Weights => _weights;

    /// <summary>Hooked pass + every default statistic for one prepared example.</summary>
    /// <param name="residualLensLayers">layers whose residual stream at image positions gets the logit lens and its attention/FFN split (none by default).</param>
    public ExampleAnalysis Analyze(ModelInput input, StatisticsOptions? options = null, IReadOnlyList<int>? residualLensLayers = null)
    {
        options ??= new StatisticsOptions();
        using var scope = NewDisposeScope();
        return Run([input], _ => options, null, residualLensLayers, (_, a, captures) => a with
        {
            TopHeadAttention = a.Statistics.TopHeads.Select(h => (h.Layer, h.Head,
                captures.Activations.PatternLastRow[h.Layer, h.Head].to(ScalarType.Float64).cpu().data<double>().ToArray())).ToList(),
        })[0];
    }

    /// <summary>
    /// The one example loop of <c>explain</c>, the studies and the pipeline: ONE hooked forward pass over
    /// <paramref name="inputs"/> (one, or several of equal length and image geometry: [B, T], no padding), then for
    /// each batch row the statistics of docs/METHOD.md (<see cref="Statistics.Compute"/>) and <paramref name="each"/>,
    /// which sees the row's analysis and the pass's captures for that row (inside the row's dispose scope: copy out
    /// what outlives it). The pass keeps what the statistics need at the last position plus <paramref name="extra"/>
    /// (hooks further consumers read). Forward time is the pass's divided among the rows.
    /// </summary>
    /// <param name="options">statistics options of batch row i.</param>
    /// <param name="residualLensLayers">layers whose residual stream at image positions gets the logit lens (none by default).</param>
    /// <param name="prefix">the inputs' shared prefix, already run (<see cref="Prefix"/>): the pass covers only the tokens after
    /// it and every statistic comes out as from a full pass (docs/METHOD.md, "Prefix reuse"); null: a full pass.</param>
    public IReadOnlyList<T> Run<T>(IReadOnlyList<ModelInput> inputs, Func<int, StatisticsOptions> options, CapturePlan? extra,
        IReadOnlyList<int>? residualLensLayers, Func<int, ExampleAnalysis, RowCaptures, T> each, ImagePrefix? prefix = null)
    {
        using var scope = NewDisposeScope();
        var first = inputs[0];
        bool image = first.PixelValues is not null;
        int layers = Model.Layers, B = inputs.Count;
        var plan = CapturePlan.ForLastPositionAnalysis(layers, image);
        bool lens = image && residualLensLayers is { Count: > 0 };
        if (lens && prefix is not null)
            throw new ArgumentException("the residual-stream lens reads every image position, which a reused prefix does not recompute: run it without one", nameof(prefix));
        if (lens)
        {
            plan.Add(HookNames.Embed, PositionSelector.At(first.ImagePositions));
            for (int l = 0; l < layers; l++) { plan.Add(HookNames.AttnOut(l), PositionSelector.All); plan.Add(HookNames.MlpOut(l), PositionSelector.All); }
        }
        if (extra is not null)
            foreach (var (hook, at) in extra.Hooks)
                if (!plan.Wants(hook)) plan.Add(hook, at);
        using var cache = new ActivationCache(plan);
        var sw = Stopwatch.StartNew();
        // Hooks see each row's image-token layout; after a prefix, the projector outputs are the prefix's.
        var logits = prefix is null ? Model.Forward(inputs, cache) : Model.ForwardAfter(prefix.Decoder, inputs, cache);
        if (prefix?.ImageFeatures is { } features && plan.Wants(HookNames.ImageFeatures))
            cache.Put(HookNames.ImageFeatures, features.expand(B, -1, -1));
        _ = logits.sum().item<float>();
        double forwardMs = sw.Elapsed.TotalMilliseconds / B;

        var results = new T[B];
        for (int b = 0; b < B; b++)
        {
            using var rowScope = NewDisposeScope();
            sw.Restart();
            var input = inputs[b];
            var acts = Captures.LastPosition(cache, layers, lastFromAll: lens, batchRow: b);
            var imagePositions = lens ? tensor(input.ImagePositions.Select(p => (long)p).ToArray(), device: Model.Device) : null;
            var o = options(b) with
            {
                ImageLayout = input.ImageLayout,
                ImageFeatures = image ? cache[HookNames.ImageFeatures][b] : null,
                ResidualLens = lens ? Captures.ImageResidual(cache, layers, imagePositions!, residualLensLayers!, b) : null,
                SharedLens = prefix?.Lens,
            };
            var stats = Statistics.Compute(acts.To(ScalarType.Float32, Model.Device), _weights, o);
            var analysis = new ExampleAnalysis(input, stats, forwardMs, sw.Elapsed.TotalMilliseconds, []);
            results[b] = each(b, analysis, new RowCaptures(cache, b, acts));
        }
        return results;
    }

    /// <summary>
    /// Runs the first <paramref name="length"/> tokens of <paramref name="input"/> (all its image tokens among them) once, for
    /// <see cref="Run{T}"/> over any input that starts with them: the decoder's keys and values and the projector outputs.
    /// </summary>
    public ImagePrefix Prefix(ModelInput input, int length)
    {
        bool image = input.PixelValues is not null;
        var keep = image ? new CapturePlan().Add(HookNames.ImageFeatures) : null;
        using var kept = new ActivationCache(keep ?? new CapturePlan());
        var decoder = Model.Prefix(input, length, keep, kept);
        return new ImagePrefix(decoder, image ? kept.Take(HookNames.ImageFeatures) : null);
    }

    public void Dispose()
    {
        _weights.Directions?.Dispose();
        if (_ownsWeights) _weights.DisposeAll();
    }
}

/// <summary>Captured hooks reshaped into the analysis library's inputs.</summary>
public static class Captures
{
    /// <summary>Stacks the last-position captures of batch row 0 into [L, ...] tensors.</summary>
    /// <param name="lastFromAll">attention/MLP outputs were captured at all positions (for the residual lens): take the last row.</param>
    public static LastPositionActivations LastPosition(ActivationCache cache, int layers, bool lastFromAll = false, int batchRow = 0)
    {
        Tensor Last(string hook) => lastFromAll ? cache[hook][batchRow].select(0, -1) : cache[hook][batchRow][0];
        Tensor Stack(Func<int, Tensor> f) => stack(Enumerable.Range(0, layers).Select(f).ToArray());
        return new LastPositionActivations(
            ResidPre: Stack(l => cache[HookNames.ResidPre(l)][batchRow][0]),                 // [L, D]
            AttnOut: Stack(l => Last(HookNames.AttnOut(l))),                                 // [L, D]
            MlpOut: Stack(l => Last(HookNames.MlpOut(l))),                                   // [L, D]
            ResidFinal: cache[HookNames.ResidFinal][batchRow][0],                            // [D]
            PatternLastRow: Stack(l => cache[HookNames.AttnPattern(l)][batchRow].select(1, 0)), // [L, H, T]
            Values: Stack(l => cache[HookNames.AttnV(l)][batchRow]),                         // [L, T, KV, d]
            MlpPost: Stack(l => cache[HookNames.MlpPost(l)][batchRow][0]));                  // [L, I]
    }

    /// <summary>Embeddings and per-layer attention/MLP outputs at the image positions, for the residual lens.</summary>
    public static ResidualLensInputs ImageResidual(ActivationCache cache, int layers, Tensor imagePositions, IReadOnlyList<int> lensLayers, int batchRow = 0)
    {
        var attn = stack(Enumerable.Range(0, layers).Select(l => cache[HookNames.AttnOut(l)][batchRow].index_select(0, imagePositions)).ToArray()); // [L, P, D]
        var mlp = stack(Enumerable.Range(0, layers).Select(l => cache[HookNames.MlpOut(l)][batchRow].index_select(0, imagePositions)).ToArray());   // [L, P, D]
        return new ResidualLensInputs(cache[HookNames.Embed][batchRow].to(ScalarType.Float32), attn.to(ScalarType.Float32), mlp.to(ScalarType.Float32), lensLayers);
    }
}
