using System.Diagnostics;
using LlavaMech.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LlavaMech.Training;

/// <summary>
/// The optimisation of one run: the optional vision pre-training (tower and projector on the patch
/// loss), then the main phase (answer loss on VQA and TQA batches, plus the weighted patch loss).
/// The patch probes exist only here; they are never part of the saved model.
/// </summary>
internal sealed class ToyOptimizer : IDisposable
{
    private readonly LlavaForConditionalGeneration _model;
    private readonly TrainingData _data;
    private readonly ToyTrainingOptions _o;
    private readonly Stopwatch _clock;
    private readonly IProgress<TrainingProgress>? _progress;
    private readonly Random _rng;
    private readonly Tensor? _rgb;
    private readonly Linear _shapeProbe, _colorProbe, _objectProbe, _maskProbe;
    private readonly long _dim;
    private readonly bool _patchLabels;

    // Statistics of the current reporting window.
    private double _windowLoss;
    private int _windowSteps;
    private long _vqaRight, _vqaSeen, _tqaRight, _tqaSeen, _shapeRight, _colorRight, _patchSeen, _objectRight, _objectSeen, _maskRight, _maskSeen;

    public ToyOptimizer(LlavaForConditionalGeneration model, TrainingData data, ToyTrainingOptions o, Stopwatch clock, IProgress<TrainingProgress>? progress)
    {
        _model = model; _data = data; _o = o; _clock = clock; _progress = progress;
        _rng = new Random(o.Seed);
        _rgb = data.VqaCount > 0 ? data.RgbTensor() : null;
        _dim = model.Config.Text.HiddenSize;
        _patchLabels = data.PatchShape is not null;
        random.manual_seed(o.Seed + 1); // probe weights from the run's seed too: a run is reproducible end to end
        _shapeProbe = nn.Linear(_dim, TrainingData.PatchShapes.Count + 1);
        _colorProbe = nn.Linear(_dim, TrainingData.PatchColors.Count + 1);
        _objectProbe = nn.Linear(_dim, TrainingData.PatchShapes.Count + 1);
        _maskProbe = nn.Linear(_dim, (long)data.PatchSize * data.PatchSize);
    }

    /// <summary>Projects the first <see cref="ToyTrainingOptions.GreyPatchFilters"/> patch filters onto grey (channel-tied) filters.</summary>
    public void TieGreyFilters()
    {
        int g = _o.GreyPatchFilters;
        if (g <= 0 && !_o.FlatColourFilters) return;
        var w = _model.named_parameters().Single(p => p.name == "vision_tower.embeddings.patch_embedding.weight").parameter; // [D, C, p, p]
        g = (int)Math.Min(Math.Max(g, 0), w.shape[0]);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (g > 0)
        {
            var part = w.narrow(0, 0, g);
            var grey = part.mean([1], keepdim: true);                               // [g, 1, p, p]
            if (_o.GreyFiltersZeroMean) grey = grey - grey.mean([2, 3], keepdim: true);
            part.copy_(grey.expand_as(part));
        }
        if (_o.FlatColourFilters && g < w.shape[0])
        {
            var rest = w.narrow(0, g, w.shape[0] - g);
            rest.copy_(rest.mean([2, 3], keepdim: true).expand_as(rest));
        }
    }

    public void Dispose()
    {
        _rgb?.Dispose();
        _shapeProbe.Dispose();
        _colorProbe.Dispose();
        _objectProbe.Dispose();
        _maskProbe.Dispose();
    }

    private bool BudgetSpent => _o.TimeBudget is TimeSpan budget && _clock.Elapsed >= budget;

    /// <summary>Share of the time left at <paramref name="start"/> that has passed (0 without a budget).</summary>
    private double TimeFraction(TimeSpan start) =>
        _o.TimeBudget is TimeSpan budget && budget > start ? (_clock.Elapsed - start) / (budget - start) : 0;

    private IEnumerable<Parameter> ProbeParameters => _shapeProbe.parameters().Concat(_colorProbe.parameters()).Concat(_objectProbe.parameters()).Concat(_maskProbe.parameters());

    /// <summary>Phase 1: tower, projector and probes on the patch loss alone. Returns the steps taken.</summary>
    public int PretrainVision()
    {
        int total = _o.VisionPretrainSteps;
        if (total <= 0 || !_patchLabels || _data.VqaCount == 0) return 0;
        var trained = _model.named_parameters()
            .Where(p => p.name.StartsWith("vision_tower.", StringComparison.Ordinal) || p.name.StartsWith("multi_modal_projector.", StringComparison.Ordinal))
            .Select(p => p.parameter).Concat(ProbeParameters).ToList();
        var schedule = _o with { LearningRate = _o.VisionPretrainLearningRate ?? _o.LearningRate };
        using var optimizer = optim.AdamW(trained, lr: schedule.LearningRate, beta1: 0.9, beta2: _o.Beta2, weight_decay: _o.WeightDecay);
        _model.train();
        int step = 0;
        var start = _clock.Elapsed;
        TimeSpan? end = _o.TimeBudget is TimeSpan b ? start + (b - start) * _o.VisionPretrainBudgetShare : null;
        double TimeShare() => end is TimeSpan e && e > start ? (_clock.Elapsed - start) / (e - start) : 0;
        while (step < total && !BudgetSpent && TimeShare() < 1)
        {
            double lr = ToyTrainer.LearningRateAt(step, total, TimeShare(), schedule);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            using (NewDisposeScope())
            {
                optimizer.zero_grad();
                var bucket = TrainingData.PickBucket(_data.Vqa, _rng);
                var batch = _data.MakeBatch(bucket, bucket.Take(_o.VisionPretrainBatchSize, _rng), _rgb, _o.FlipAugment, _rng, CPU);
                var loss = PatchLoss(_model.ImageFeatures(batch.Pixels!), batch);
                loss.backward();
                if (_o.GradClip > 0) nn.utils.clip_grad_norm_(trained, _o.GradClip);
                optimizer.step();
                TieGreyFilters();
                _windowLoss += loss.item<float>();
            }
            step++;
            _windowSteps++;
            Report(TrainingPhase.PretrainingVision, step, total, lr);
        }
        return step;
    }

    /// <summary>Phase 2: every parameter, answer loss (VQA + weighted TQA) plus the weighted patch loss.</summary>
    public (int Steps, List<double> Losses) Train(int totalSteps)
    {
        var parameters = _model.parameters().ToList();
        bool usePatches = _o.PatchLossWeight > 0 && _patchLabels;
        var trained = usePatches ? parameters.Concat(ProbeParameters).ToList() : parameters;
        using var optimizer = optim.AdamW(trained, lr: _o.LearningRate, beta1: 0.9, beta2: _o.Beta2, weight_decay: _o.WeightDecay);
        var losses = new List<double>(totalSteps);
        bool useTqa = _o.TextQaBatchSize > 0 && _data.TqaCount > 0;
        bool useVqa = _data.VqaCount > 0;
        _model.train();
        int step = 0;
        var start = _clock.Elapsed;
        while (step < totalSteps && !BudgetSpent)
        {
            // With a time budget the cosine decay keeps pace with the clock, so a run cut short still ends cooled down.
            double lr = ToyTrainer.LearningRateAt(step, totalSteps, TimeFraction(start), _o);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            using (NewDisposeScope())
            {
                optimizer.zero_grad();
                Tensor? loss = null;
                if (useVqa)
                {
                    var bucket = TrainingData.PickBucket(_data.Vqa, _rng);
                    var batch = _data.MakeBatch(bucket, bucket.Take(_o.BatchSize, _rng), _rgb, _o.FlipAugment, _rng, CPU);
                    var features = _model.ImageFeatures(batch.Pixels!);                                         // [B, P, D]
                    var logits = _model.LanguageModel.Forward(Splice(batch.Ids, features), null).select(1, 0); // [B, V]
                    loss = nn.functional.cross_entropy(logits, batch.Targets);
                    if (usePatches) loss = loss + _o.PatchLossWeight * PatchLoss(features, batch);
                    _vqaRight += logits.argmax(-1).eq(batch.Targets).sum().item<long>();
                    _vqaSeen += batch.Targets.shape[0];
                }
                if (useTqa)
                {
                    var bucket = TrainingData.PickBucket(_data.Tqa, _rng);
                    var batch = _data.MakeBatch(bucket, bucket.Take(Math.Min(_o.TextQaBatchSize, bucket.Count), _rng), null, false, _rng, CPU);
                    var logits = _model.Forward(batch.Ids, null, null).select(1, 0);
                    var lossT = nn.functional.cross_entropy(logits, batch.Targets);
                    loss = loss is null ? lossT : loss + _o.TextQaLossWeight * lossT;
                    _tqaRight += logits.argmax(-1).eq(batch.Targets).sum().item<long>();
                    _tqaSeen += batch.Targets.shape[0];
                }
                loss!.backward();
                if (_o.GradClip > 0) nn.utils.clip_grad_norm_(trained, _o.GradClip);
                optimizer.step();
                TieGreyFilters();
                double l = loss.item<float>();
                losses.Add(l);
                _windowLoss += l;
            }
            step++;
            _windowSteps++;
            Report(TrainingPhase.Training, step, totalSteps, lr);
        }
        return (step, losses);
    }

    /// <summary>Cross-entropy of the shape and colour probes on every patch (background is a class).</summary>
    private Tensor PatchLoss(Tensor features, TrainingData.Batch batch)
    {
        var flat = features.reshape(-1, _dim);
        var shapeLabels = batch.PatchShape!.reshape(-1);
        var colorLabels = batch.PatchColor!.reshape(-1);
        var shapeLogits = _shapeProbe.call(flat);
        var colorLogits = _colorProbe.call(flat);
        var objects = shapeLabels.gt(0);
        _shapeRight += shapeLogits.argmax(-1).eq(shapeLabels).logical_and(objects).sum().item<long>();
        _colorRight += colorLogits.argmax(-1).eq(colorLabels).logical_and(objects).sum().item<long>();
        _patchSeen += objects.sum().item<long>();
        var loss = nn.functional.cross_entropy(shapeLogits, shapeLabels) + nn.functional.cross_entropy(colorLogits, colorLabels);
        if (_o.ObjectLossWeight > 0) loss = loss + _o.ObjectLossWeight * ObjectLoss(features, batch);
        if (_o.MaskLossWeight > 0 && batch.ObjectPixels is not null)
        {
            var maskLogits = _maskProbe.call(features);                                                  // [B, P, patch*patch]
            loss = loss + _o.MaskLossWeight * nn.functional.binary_cross_entropy_with_logits(maskLogits, batch.ObjectPixels);
            _maskRight += maskLogits.gt(0).eq(batch.ObjectPixels.gt(0.5)).sum().item<long>();
            _maskSeen += batch.ObjectPixels.numel();
        }
        return loss;
    }

    /// <summary>
    /// Shape of each object from the mean of its patches' features (an object's patches are those
    /// labelled with its colour: colours are unique within an image). Local evidence of several
    /// patches adds up here, which the single-patch probe cannot use.
    /// </summary>
    private Tensor ObjectLoss(Tensor features, TrainingData.Batch batch)
    {
        int colors = TrainingData.PatchColors.Count + 1;
        var onehot = nn.functional.one_hot(batch.PatchColor!, colors).to(features.dtype).narrow(2, 1, colors - 1); // [B, P, C]
        var counts = onehot.sum(1);                                                                          // [B, C]
        var pooled = onehot.transpose(1, 2).bmm(features) / counts.clamp_min(1).unsqueeze(-1);               // [B, C, D]
        // The shape of each (image, colour): any patch of that colour carries it.
        var shapeOf = onehot.transpose(1, 2).bmm(batch.PatchShape!.to(features.dtype).unsqueeze(-1)).squeeze(-1) / counts.clamp_min(1); // [B, C]
        var present = counts.gt(0).reshape(-1);
        var logits = _objectProbe.call(pooled.reshape(-1, _dim)).index_select(0, present.nonzero().squeeze(1));
        var labels = shapeOf.round().to(ScalarType.Int64).reshape(-1).index_select(0, present.nonzero().squeeze(1));
        _objectRight += logits.argmax(-1).eq(labels).sum().item<long>();
        _objectSeen += labels.shape[0];
        return nn.functional.cross_entropy(logits, labels);
    }

    /// <summary>
    /// What <see cref="LlavaForConditionalGeneration.Embed"/> does, given the image features already
    /// computed: token embeddings with the image tokens' rows replaced, in order, by the features.
    /// </summary>
    private Tensor Splice(Tensor ids, Tensor features)
    {
        var isImage = ids.eq(_model.Config.ImageTokenId);
        var embeds = _model.LanguageModel.Model.EmbedTokens.call(ids.masked_fill(isImage, 0));
        return embeds.masked_scatter(isImage.unsqueeze(-1), features.to(embeds.dtype));
    }

    private void Report(TrainingPhase phase, int step, int total, double lr)
    {
        if (step % Math.Max(1, _o.ReportEvery) != 0 && step != total) return;
        static double Rate(long right, long seen) => seen > 0 ? (double)right / seen : double.NaN;
        _progress?.Report(new TrainingProgress(phase, step, total, _windowLoss / Math.Max(1, _windowSteps),
            Rate(_vqaRight, _vqaSeen), Rate(_tqaRight, _tqaSeen), lr, _clock.Elapsed)
        {
            PatchShapeAccuracy = Rate(_shapeRight, _patchSeen),
            PatchColorAccuracy = Rate(_colorRight, _patchSeen),
            ObjectShapeAccuracy = Rate(_objectRight, _objectSeen),
            MaskAccuracy = Rate(_maskRight, _maskSeen),
        });
        _windowLoss = 0;
        _windowSteps = 0;
        _vqaRight = _vqaSeen = _tqaRight = _tqaSeen = _shapeRight = _colorRight = _patchSeen = _objectRight = _objectSeen = _maskRight = _maskSeen = 0;
    }
}
