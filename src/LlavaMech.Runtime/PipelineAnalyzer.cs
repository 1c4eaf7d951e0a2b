using System.Diagnostics;
using System.Text.Json.Nodes;
using LlavaMech.Analysis;
using LlavaMech.Explanation;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Processing;
using LlavaMech.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace LlavaMech.Runtime;

/// <summary>
/// One example through the hooked pass and the statistics, turned into table rows. The pass and the statistics are
/// exactly <see cref="ExampleAnalyzer.Analyze"/>'s (same capture plan, same inputs to <see cref="Statistics.Compute"/>);
/// from the same captures it also reads what the tables need beyond <see cref="ExampleStatistics"/>: the top heads'
/// attention rows (position_stats.attn_weight) and the top neurons' MLP coefficients (neuron_stats.coefficient).
/// Not thread-safe: one per model, used from the thread that owns the model.
/// </summary>
public sealed class PipelineAnalyzer : IDisposable
{
    private readonly ExampleAnalyzer _analyzer;
    private readonly ILogger _log;

    /// <param name="log">where a batch whose pass threw is reported (warning) before its examples run one by one.</param>
    public PipelineAnalyzer(LoadedModel model, ILogger? log = null)
    {
        Model = model;
        _analyzer = new ExampleAnalyzer(model);
        _log = log ?? NullLogger.Instance;
    }

    public LoadedModel Model { get; }

    /// <summary>Hooked forward passes run so far (one per example alone, one per batch).</summary>
    public long ForwardPasses { get; private set; }

    /// <summary>Batched passes that threw and whose examples were run again one by one.</summary>
    public long BatchFallbacks { get; private set; }

    /// <summary>
    /// Analyzes one example. Input problems (unreadable or undecodable image, a prompt the model cannot take, an
    /// expected answer that is not one token under <see cref="TargetMode.Expected"/>) give a rejected outcome with the
    /// reason, and so does an example whose pass yields a non-finite statistic (reason: "non-finite statistic ..."
    /// naming the first one, see <see cref="NonFinite.FirstNonFinite"/>) or whose own analysis throws ("analysis
    /// failed: ..."). Device faults (<see cref="IsDeviceFault"/>: out of memory, CUDA errors) throw: they are the
    /// worker's, not the example's, and the shard runs again.
    /// </summary>
    public ExampleOutcome Run(ExampleWork work, AnalysisSettings settings)
    {
        var (input, target, reject) = Prepare(work, settings);
        return reject ?? RunIsolated(work, input!, target, settings);
    }

    /// <summary>
    /// Analyzes several examples, in order: each is prepared (rejects exactly as <see cref="Run"/>), the accepted ones
    /// are grouped by sequence length and image geometry, and each group of up to
    /// <see cref="AnalysisSettings.BatchSize"/> goes through ONE hooked pass [B, T] (equal lengths: no padding, no
    /// attention mask); every batch row then gets the statistics and rows <see cref="Run"/> gives it alone (a row with
    /// a non-finite statistic is rejected alone: rows do not mix in the pass). A batch whose pass throws is logged
    /// (warning) and run again one example at a time, so one bad example cannot fail the others. Forward and
    /// statistics times of a batched example are the batch's divided by its size.
    /// </summary>
    public ExampleOutcome[] RunBatch(IReadOnlyList<ExampleWork> works, AnalysisSettings settings)
    {
        var outcomes = new ExampleOutcome[works.Count];
        if (settings.BatchSize <= 1 || works.Count == 1)
        {
            for (int i = 0; i < works.Count; i++) outcomes[i] = Run(works[i], settings);
            return outcomes;
        }
        var accepted = new List<(int Index, ModelInput Input, int? Target)>();
        for (int i = 0; i < works.Count; i++)
        {
            var (input, target, reject) = Prepare(works[i], settings);
            if (reject is not null) outcomes[i] = reject;
            else accepted.Add((i, input!, target));
        }
        foreach (var group in accepted.GroupBy(a => BatchKey(a.Input)))
        {
            var members = group.ToList();
            for (int start = 0; start < members.Count; start += settings.BatchSize)
            {
                var batch = members.Skip(start).Take(settings.BatchSize).ToList();
                if (batch.Count == 1)
                {
                    var one = batch[0];
                    outcomes[one.Index] = RunIsolated(works[one.Index], one.Input, one.Target, settings);
                    continue;
                }
                ExampleOutcome[]? results = null;
                try
                {
                    results = RunBatched(batch.Select(b => (works[b.Index], b.Input, b.Target)).ToList(), settings);
                }
                catch (Exception e) when (!IsDeviceFault(e))
                {
                    BatchFallbacks++;
                    _log.LogWarning("batched pass of {Count} examples ({Ids}) failed, running them one by one: {Error}", batch.Count,
                        string.Join(", ", batch.Select(b => works[b.Index].Id)), e.Message);
                }
                for (int j = 0; j < batch.Count; j++)
                    outcomes[batch[j].Index] = results?[j] ?? RunIsolated(works[batch[j].Index], batch[j].Input, batch[j].Target, settings);
            }
        }
        return outcomes;
    }

    /// <summary>What must be equal for examples to share a pass: sequence length, image or not, and the image's size.</summary>
    private static (int SeqLen, bool Image, int Height, int Width, int ImageTokens) BatchKey(ModelInput input) =>
        (input.SeqLen, input.PixelValues is not null, input.Image?.Geometry.CropHeight ?? 0, input.Image?.Geometry.CropWidth ?? 0, input.ImagePositions.Length);

    /// <summary>The example's input and target, or its rejected outcome.</summary>
    private (ModelInput? Input, int? Target, ExampleOutcome? Reject) Prepare(ExampleWork work, AnalysisSettings settings)
    {
        var model = Model;
        int vocab = model.Config.Text.VocabSize;
        if (work.ImagePath is not null && !model.HasVision)
            return (null, null, Reject(work, $"model '{model.Directory}' is text-only ({model.Config.Kind}); it cannot take the image of a vqa example"));

        int? target = null;
        if (settings.Target == TargetMode.Expected && work.Expected is not null)
        {
            target = TargetResolver.SingleToken(work.Expected, model.Tokenizer, vocab);
            if (target is null) return (null, null, Reject(work, TargetResolver.NotOneTokenReason(work.Expected, model.Tokenizer)));
        }

        try
        {
            return (model.Prepare(work.Prompt, work.ImagePath, settings.MaxPromptTokens), target, null);
        }
        catch (Exception e) when (e is ProcessingException or IOException or UnauthorizedAccessException or ArgumentException or InvalidDataException)
        {
            return (null, null, Reject(work, e.Message));
        }
    }

    /// <summary>One prepared example alone: what its own analysis throws becomes its reject, except a device fault.</summary>
    private ExampleOutcome RunIsolated(ExampleWork work, ModelInput input, int? target, AnalysisSettings settings)
    {
        try
        {
            return RunBatched([(work, input, target)], settings)[0];
        }
        catch (Exception e) when (!IsDeviceFault(e))
        {
            _log.LogWarning("example {Id} (line {Line}) rejected: its analysis failed: {Error}", work.Id, work.Line, e.Message);
            return Reject(work, $"analysis failed: {e.Message}");
        }
    }

    /// <summary>
    /// Failures of the device or the process rather than of one example: out of memory (host or CUDA), CUDA errors,
    /// a disposed model. These propagate (the shard is retried, the runner's health counts them) instead of
    /// rejecting the example.
    /// </summary>
    public static bool IsDeviceFault(Exception e) =>
        e is OutOfMemoryException or ObjectDisposedException or OperationCanceledException or ThreadInterruptedException
        || e.Message.Contains("CUDA", StringComparison.OrdinalIgnoreCase)
        || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
        || e.Message.Contains("device-side", StringComparison.OrdinalIgnoreCase);

    /// <summary>One hooked pass over examples of equal length and image geometry (one or more), then each row's statistics.</summary>
    private ExampleOutcome[] RunBatched(IReadOnlyList<(ExampleWork Work, ModelInput Input, int? Target)> batch, AnalysisSettings settings)
    {
        var model = Model;
        int B = batch.Count;
        using var scope = NewDisposeScope();
        using var cache = new ActivationCache(CapturePlan.ForLastPositionAnalysis(model.Layers, batch[0].Input.PixelValues is not null));
        var sw = Stopwatch.StartNew();
        var (ids, pixels) = model.ToTensors(batch.Select(b => b.Input).ToList());
        var logits = model.Forward(ids, pixels, cache);
        _ = logits.sum().item<float>();
        ForwardPasses++;
        double forwardMs = sw.Elapsed.TotalMilliseconds;

        double statsMs = 0;
        var rows = new ExampleRows?[B];
        var nonFinite = new string?[B];
        for (int b = 0; b < B; b++)
        {
            using var rowScope = NewDisposeScope();
            sw.Restart();
            var (stats, acts) = Analyze(batch[b].Input, settings.ToStatisticsOptions(batch[b].Target), cache, b);
            statsMs += sw.Elapsed.TotalMilliseconds;
            // A non-finite value (fp16 overflow, a corrupt weight row) cannot be stored: the example is rejected, naming it.
            nonFinite[b] = stats.FirstNonFinite();
            if (nonFinite[b] is null) rows[b] = BuildRows(batch[b].Work, batch[b].Input, stats, acts, settings);
            else _log.LogWarning("example {Id} (line {Line}) rejected: non-finite statistic {Statistic}", batch[b].Work.Id, batch[b].Work.Line, nonFinite[b]);
        }
        return batch.Select((b, i) => nonFinite[i] is { } bad
            ? new ExampleOutcome(b.Work, null, $"non-finite statistic {bad}", forwardMs / B, statsMs / B)
            : new ExampleOutcome(b.Work, rows[i], null, forwardMs / B, statsMs / B)).ToArray();
    }

    private static ExampleOutcome Reject(ExampleWork work, string reason) => new(work, null, reason, 0, 0);

    /// <summary>
    /// <see cref="ExampleAnalyzer.Analyze"/>'s statistics without the residual lens, for batch row
    /// <paramref name="batchRow"/> of the captures (in the caller's cache and dispose scope).
    /// </summary>
    private (ExampleStatistics Stats, LastPositionActivations Acts) Analyze(ModelInput input, StatisticsOptions options, ActivationCache cache, int batchRow)
    {
        var model = Model;
        bool image = input.PixelValues is not null;
        var acts = Captures.LastPosition(cache, model.Layers, batchRow: batchRow);
        var o = options with
        {
            ImageLayout = input.ImageLayout,
            ImageFeatures = image ? cache[HookNames.ImageFeatures][batchRow] : null,
        };
        var stats = Statistics.Compute(acts.To(ScalarType.Float32, model.Device), _analyzer.Weights, o);
        return (stats, acts);
    }

    private ExampleRows BuildRows(ExampleWork work, ModelInput input, ExampleStatistics s, LastPositionActivations acts, AnalysisSettings settings)
    {
        var model = Model;
        string id = work.Id;
        int L = s.LayerAttnIncrease.Length;
        int vocab = model.Config.Text.VocabSize;

        // examples
        bool? correct = null;
        if (work.Expected is not null && TargetResolver.FirstToken(work.Expected, model.Tokenizer, vocab) is { } expectedToken)
            correct = s.Top5Ids.Length > 0 && s.Top5Ids[0] == expectedToken;
        var example = new ExampleRow(id, work.Task, work.Prompt, s.TargetId, model.TokenText(s.TargetId), Math.Exp(s.TargetLogProb),
            work.Expected, correct, input.SeqLen, input.ImagePositions.Length, Metadata(work, s, model));

        // layer_stats
        var layerRows = new List<LayerStatRow>(2 * L);
        for (int l = 0; l < L; l++)
        {
            layerRows.Add(new LayerStatRow(id, l, Components.Attention, s.LayerAttnIncrease[l]));
            layerRows.Add(new LayerStatRow(id, l, Components.Ffn, s.LayerFfnIncrease[l]));
        }

        // head_stats
        var share = s.Image?.ImageAttentionShare;
        bool hasShare = share is { Length: > 0 };
        var headRows = new List<HeadStatRow>();
        for (int l = 0; l < s.HeadIncrease.Length; l++)
            for (int h = 0; h < s.HeadIncrease[l].Length; h++)
                headRows.Add(new HeadStatRow(id, l, h, s.HeadIncrease[l][h], hasShare ? share![l][h] : null));

        // position_stats: the top heads' scores and attention weights at every position
        var layout = input.ImageLayout;
        var positionRows = new List<PositionStatRow>();
        if (s.PositionIncrease.Length > 0)
        {
            var sel = tensor(s.PositionIncrease.Select(p => (long)p.Layer * acts.Heads + p.Head).ToArray(), device: acts.PatternLastRow.device);
            var rowsT = acts.PatternLastRow.reshape(-1, acts.Positions).index_select(0, sel).to(ScalarType.Float64).cpu();
            var weights = rowsT.data<double>().ToArray();
            int T = acts.Positions;
            for (int i = 0; i < s.PositionIncrease.Length; i++)
            {
                var p = s.PositionIncrease[i];
                for (int t = 0; t < p.Scores.Length; t++)
                {
                    bool isImage = layout?.Contains(t) == true;
                    var cell = layout?.CellAt(t);
                    positionRows.Add(new PositionStatRow(id, p.Layer, p.Head, t, isImage, cell?.Row, cell?.Col, p.Scores[t], weights[i * T + t]));
                }
            }
        }

        // neuron_stats: top-N exact scores, with the coefficient m at the last position
        var neuronRows = new List<NeuronStatRow>();
        if (s.Neurons is { } n && settings.TopNeurons > 0)
        {
            var top = new List<(int Layer, int Neuron, double Score)>();
            for (int l = 0; l < n.Scores.Length; l++)
                for (int i = 0; i < n.Scores[l].Length; i++)
                    if (n.IsExact(l, i)) top.Add((l, i, n.Scores[l][i]));
            var chosen = top.OrderByDescending(x => x.Score).Take(settings.TopNeurons).ToList();   // stable: ties keep (layer, neuron) order
            if (chosen.Count > 0)
            {
                int width = acts.MlpWidth;
                var sel = tensor(chosen.Select(c => (long)c.Layer * width + c.Neuron).ToArray(), device: acts.MlpPost.device);
                var coef = acts.MlpPost.reshape(-1).index_select(0, sel).to(ScalarType.Float64).cpu().data<double>().ToArray();
                for (int j = 0; j < chosen.Count; j++)
                    neuronRows.Add(new NeuronStatRow(id, chosen[j].Layer, chosen[j].Neuron, chosen[j].Score, coef[j]));
            }
        }

        // logit_lens: the visual tokens' top-k
        var lensRows = new List<LogitLensRow>();
        if (s.Image?.VisualTokenLens is { } lens)
            for (int p = 0; p < lens.TopIds.Length && p < input.ImagePositions.Length; p++)
                for (int r = 0; r < lens.TopIds[p].Length; r++)
                    lensRows.Add(new LogitLensRow(id, input.ImagePositions[p], r, lens.TopIds[p][r], model.TokenText(lens.TopIds[p][r])));

        return new ExampleRows(example, layerRows, headRows, positionRows, neuronRows, lensRows);
    }

    /// <summary>
    /// The manifest's metadata object plus a "llavamech" object: manifest line, image (as written), object box, the
    /// top-5 next tokens with probabilities, the frozen final-norm scale and the neuron route. A manifest that already
    /// has a "llavamech" field keeps its own.
    /// </summary>
    private static string Metadata(ExampleWork work, ExampleStatistics s, LoadedModel model)
    {
        JsonObject obj;
        try { obj = JsonNode.Parse(string.IsNullOrWhiteSpace(work.MetadataJson) ? "{}" : work.MetadataJson) as JsonObject ?? new JsonObject(); }
        catch (System.Text.Json.JsonException) { obj = new JsonObject(); }
        if (!obj.ContainsKey("llavamech"))
        {
            var top5 = new JsonArray();
            for (int i = 0; i < s.Top5Ids.Length; i++)
                top5.Add(new JsonObject { ["id"] = s.Top5Ids[i], ["token"] = model.TokenText(s.Top5Ids[i]), ["prob"] = s.Top5Probs[i] });
            obj["llavamech"] = new JsonObject
            {
                ["line"] = work.Line,
                ["image"] = work.ImageRelative,
                ["object_box"] = work.ObjectBox is null ? null : new JsonArray(work.ObjectBox.Select(v => (JsonNode)JsonValue.Create(v)).ToArray()),
                ["top5"] = top5,
                ["frozen_scale"] = s.FrozenScale,
                ["neuron_route"] = s.Neurons?.Route.ToString().ToLowerInvariant(),
            };
        }
        return obj.ToJsonString();
    }

    public void Dispose() => _analyzer.Dispose();
}
