using System.Diagnostics;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Analysis;
using LlavaMech.Explanation;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Processing;
using LlavaMech.Runtime.Stats;
using LlavaMech.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace LlavaMech.Runtime;

/// <summary>
/// Examples through the hooked pass and the statistics, turned into table rows: the pass and the shared readout are
/// <see cref="ExampleAnalyzer.Run{T}"/>'s (the runner of <c>explain</c>), and every statistic of
/// <see cref="StatisticCatalog"/> adds its hooks to the pass and emits its rows from the same captures.
/// Not thread-safe: one per model, used from the thread that owns the model.
/// </summary>
public sealed class PipelineAnalyzer : IDisposable
{
    private readonly ExampleAnalyzer _analyzer;
    private readonly ILogger _log;
    private readonly PrefixCache _prefixes = new(0);

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

    /// <summary>Shared prefixes run (<see cref="AnalysisSettings.PrefixReuse"/>): one per image and prompt prefix, unless cached.</summary>
    public long PrefixPasses { get; private set; }

    /// <summary>Examples analysed by a pass after a reused prefix.</summary>
    public long ExamplesAfterPrefix { get; private set; }

    /// <summary>
    /// The shortest shared prefix that <see cref="PrefixReuse.Auto"/> reuses. Below it a model's passes cost little next to
    /// their fixed overhead, and the full passes batch across images: on the toy model (a 42-token prefix), reuse ran at
    /// 0.64-1.11x of batched full passes with 2-10 questions per image (README, "Prefix reuse"); a real LLaVA image alone is
    /// several hundred tokens or more.
    /// </summary>
    public const int AutoPrefixTokens = 256;

    /// <summary>The reused prefixes held (bounded by <see cref="AnalysisSettings.PrefixCacheMiB"/>).</summary>
    public PrefixCache Prefixes => _prefixes;

    /// <summary>
    /// Where the analysed examples' time went, summed in milliseconds: <c>forward</c> (each pass's share per row; a reused
    /// prefix's own pass is not in it), each phase of <see cref="Statistics.Compute"/> (layers_heads, positions, neurons,
    /// image_maps, visual_lens, to_host) and <c>rows</c> (the table rows). What <c>bench --questions</c> prints per question.
    /// </summary>
    public Dictionary<string, double> PhaseMs { get; } = new();

    /// <summary>The model's readout directions held (bounded by <see cref="AnalysisSettings.ReadoutCacheMiB"/>).</summary>
    public UnembeddedDirections Directions => _analyzer.Weights.Directions!;

    /// <summary>
    /// Analyzes one example. Input problems (unreadable or undecodable image, a prompt the model cannot take, an
    /// expected answer that is not one token under <see cref="TargetMode.Expected"/>) give a rejected outcome with the
    /// reason, and so does an example whose pass yields a non-finite statistic (reason: "non-finite statistic ..."
    /// naming the first one, see <see cref="NonFinite.FirstNonFinite"/>) or whose own analysis throws ("analysis
    /// failed: ..."). Device faults (<see cref="IsDeviceFault"/>: out of memory, CUDA errors) throw: they are the
    /// worker's, not the example's, and the shard runs again.
    /// </summary>
    public ExampleOutcome Run(ManifestExample work, AnalysisSettings settings)
    {
        Bound(settings);
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
    public ExampleOutcome[] RunBatch(IReadOnlyList<ManifestExample> works, AnalysisSettings settings)
    {
        Bound(settings);
        var outcomes = new ExampleOutcome[works.Count];
        if ((settings.BatchSize <= 1 && settings.PrefixReuse == PrefixReuse.Off) || works.Count == 1)
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
        RunAccepted(works, accepted, settings, outcomes);
        return outcomes;
    }

    /// <summary>
    /// <see cref="RunBatch"/> of inputs already prepared (one per work, explaining the argmax), e.g. token ids without a
    /// tokenizer for a model with random weights (the benchmarks).
    /// </summary>
    public ExampleOutcome[] RunPrepared(IReadOnlyList<ManifestExample> works, IReadOnlyList<ModelInput> inputs, AnalysisSettings settings)
    {
        Bound(settings);
        var outcomes = new ExampleOutcome[works.Count];
        RunAccepted(works, inputs.Select((input, i) => (i, input, (int?)null)).ToList(), settings, outcomes);
        return outcomes;
    }

    /// <summary>Applies the result-neutral memory bounds of <paramref name="settings"/>: the reused prefixes and the readout directions.</summary>
    private void Bound(AnalysisSettings settings)
    {
        _prefixes.CapacityBytes = PrefixCache.BytesOf(settings, Model.Device);
        _prefixes.Trim(_prefixes.CapacityBytes);
        _analyzer.Weights.Directions!.CapacityBytes = settings.ReadoutCacheMiB > 0
            ? (long)settings.ReadoutCacheMiB << 20 : UnembeddedDirections.DefaultBytes(Model.Device);
    }

    private void RunAccepted(IReadOnlyList<ManifestExample> works, List<(int Index, ModelInput Input, int? Target)> accepted, AnalysisSettings settings,
        ExampleOutcome[] outcomes)
    {
        if (settings.PrefixReuse != PrefixReuse.Off)
            accepted = RunPrefixGroups(works, accepted, settings, outcomes);
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
    }

    /// <summary>
    /// The examples that share an image and a token prefix (at least through the image's last token), two or more of them:
    /// their longest common prefix (leaving each at least one token) runs once (<see cref="ExampleAnalyzer.Prefix"/>, kept in
    /// <see cref="Prefixes"/>), then those of equal length go through passes of up to <see cref="AnalysisSettings.BatchSize"/>
    /// after it. Their outcomes are filled in; the examples left (alone with their image, a prefix too large for the cache, a
    /// failed prefix pass) are returned for full passes.
    /// </summary>
    private List<(int Index, ModelInput Input, int? Target)> RunPrefixGroups(IReadOnlyList<ManifestExample> works,
        List<(int Index, ModelInput Input, int? Target)> accepted, AnalysisSettings settings, ExampleOutcome[] outcomes)
    {
        var rest = new List<(int Index, ModelInput Input, int? Target)>();
        foreach (var group in accepted.GroupBy(a => ImageKey(a.Input)))
        {
            var members = group.ToList();
            if (group.Key is null || members.Count < 2) { rest.AddRange(members); continue; }
            int length = SharedLength(members.Select(m => m.Input.InputIds).ToList());
            if (settings.PrefixReuse == PrefixReuse.Auto && length < AutoPrefixTokens) { rest.AddRange(members); continue; }
            var first = members[0].Input;
            string key = $"{first.ImagePath}\n{string.Join(",", first.InputIds.Take(length))}";
            ImagePrefix? prefix;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                prefix = _prefixes.GetOrAdd(key, ImagePrefix.BytesFor(Model, length, first.ImagePositions.Length), () =>
                {
                    PrefixPasses++;
                    return _analyzer.Prefix(first, length);
                });
            }
            catch (Exception e) when (!IsDeviceFault(e))
            {
                _log.LogWarning("the shared prefix of {Count} examples of image {Image} failed, running them in full: {Error}", members.Count, first.ImagePath, e.Message);
                prefix = null;
            }
            if (prefix is null) { rest.AddRange(members); continue; }
            double prefixMs = clock.Elapsed.TotalMilliseconds / members.Count;
            foreach (var sameLength in members.GroupBy(m => m.Input.SeqLen))
                foreach (var batch in sameLength.Chunk(Math.Max(1, settings.BatchSize)))
                {
                    ExampleOutcome[]? results = null;
                    try
                    {
                        results = RunBatched(batch.Select(b => (works[b.Index], b.Input, b.Target)).ToList(), settings, prefix);
                        ExamplesAfterPrefix += batch.Length;
                    }
                    catch (Exception e) when (!IsDeviceFault(e))
                    {
                        BatchFallbacks++;
                        _log.LogWarning("a pass of {Count} examples ({Ids}) after their shared prefix failed, running them one by one: {Error}", batch.Length,
                            string.Join(", ", batch.Select(b => works[b.Index].Id)), e.Message);
                    }
                    for (int j = 0; j < batch.Length; j++)
                    {
                        var o = results?[j] ?? RunIsolated(works[batch[j].Index], batch[j].Input, batch[j].Target, settings);
                        outcomes[batch[j].Index] = o with { ForwardMs = o.ForwardMs + (results is null ? 0 : prefixMs) };
                    }
                }
        }
        return rest;
    }

    /// <summary>What examples that may share a prefix have in common: the image file and the tokens through the image's last
    /// token (null for a text-only example, which runs in full).</summary>
    private static string? ImageKey(ModelInput input) => input.ImagePositions.Length == 0 || input.ImagePath is null ? null
        : $"{input.ImagePath}\n{string.Join(",", input.InputIds.Take(input.ImagePositions[^1] + 1))}";

    /// <summary>The longest prefix all <paramref name="ids"/> share, leaving each at least its last token.</summary>
    public static int SharedLength(IReadOnlyList<long[]> ids)
    {
        int length = ids.Min(i => i.Length) - 1;
        for (int p = 0; p < length; p++)
            foreach (var other in ids)
                if (other[p] != ids[0][p]) return p;
        return length;
    }

    /// <summary>What must be equal for examples to share a pass: sequence length, image or not, the image's size and tiles.</summary>
    private static (int SeqLen, bool Image, int Height, int Width, int Tiles, int ImageTokens) BatchKey(ModelInput input) =>
        (input.SeqLen, input.PixelValues is not null, input.Image?.Geometry.CropHeight ?? 0, input.Image?.Geometry.CropWidth ?? 0, input.Image?.Tiles ?? 0,
         input.ImagePositions.Length);

    /// <summary>The example's input and target, or its rejected outcome.</summary>
    private (ModelInput? Input, int? Target, ExampleOutcome? Reject) Prepare(ManifestExample work, AnalysisSettings settings)
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
    private ExampleOutcome RunIsolated(ManifestExample work, ModelInput input, int? target, AnalysisSettings settings)
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

    /// <summary>
    /// One hooked pass over examples of equal length and image geometry (one or more) on the runner <c>explain</c> uses
    /// (<see cref="ExampleAnalyzer.Run{T}"/>), with the hooks of every statistic of <see cref="StatisticCatalog"/>; then
    /// each row's rows from every statistic, or its reject when a statistic is not finite.
    /// </summary>
    private ExampleOutcome[] RunBatched(IReadOnlyList<(ManifestExample Work, ModelInput Input, int? Target)> batch, AnalysisSettings settings,
        ImagePrefix? prefix = null)
    {
        var model = Model;
        var plan = StatisticCatalog.Plan(model.Layers, batch[0].Input.PixelValues is not null);
        var outcomes = _analyzer.Run(batch.Select(b => b.Input).ToList(), i => settings.ToStatisticsOptions(batch[i].Target), plan, null, (i, a, captures) =>
        {
            var work = batch[i].Work;
            // A non-finite value (fp16 overflow, a corrupt weight row) cannot be stored: the example is rejected, naming it.
            if (a.Statistics.FirstNonFinite() is { } bad)
            {
                _log.LogWarning("example {Id} (line {Line}) rejected: non-finite statistic {Statistic}", work.Id, work.Line, bad);
                return new ExampleOutcome(work, null, $"non-finite statistic {bad}", a.ForwardMs, a.StatisticsMs);
            }
            var clock = Stopwatch.StartNew();
            var rows = StatisticCatalog.Rows(new StatisticInput(work, a.Input, a.Statistics, captures, model, settings, prefix));
            AddPhase("rows", clock.Elapsed.TotalMilliseconds);
            AddPhase("forward", a.ForwardMs);
            foreach (var (phase, ms) in a.Statistics.TimingsMs) AddPhase(phase, ms);
            return new ExampleOutcome(work, rows, null, a.ForwardMs, a.StatisticsMs);
        }, prefix);
        ForwardPasses++;
        return outcomes.ToArray();
    }

    private void AddPhase(string phase, double ms) => PhaseMs[phase] = PhaseMs.GetValueOrDefault(phase) + ms;

    private static ExampleOutcome Reject(ManifestExample work, string reason) => new(work, null, reason, 0, 0);

    public void Dispose()
    {
        _prefixes.Dispose();
        _analyzer.Dispose();
    }
}
