using LlavaMech.Hooks;
using LlavaMech.Model;
using static TorchSharp.torch;

namespace LlavaMech.Explanation;

/// <summary>
/// The interventions and gradients every image-patch attribution method and the faithfulness
/// curves share: one example's input embeddings, its image positions, the target, and a
/// "removed patch" embedding (the mean image-token embedding of this example).
/// All tensors live in the caller's dispose scope.
/// </summary>
public sealed class ImageTokenAttribution
{
    private readonly LoadedModel _model;
    private readonly Tensor _embeds;       // [1, T, D]
    private readonly Tensor _positions;    // [P] sequence positions of the image tokens
    private readonly Tensor _removed;      // [D] replacement for an ablated image token
    private readonly ImageTokenLayout _layout;

    public ImageTokenAttribution(LoadedModel model, ModelInput input, int targetId, int batchSize = 32)
    {
        if (input.PixelValues is null || input.ImageLayout is null) throw new ArgumentException("image attribution needs an image input");
        _model = model;
        TargetId = targetId;
        BatchSize = Math.Max(1, batchSize);
        using (inference_mode())
        {
            var (ids, pixels) = model.ToTensors(input);
            _embeds = model.Embed(ids, pixels, null, [input.ImageLayout]).clone();
        }
        _positions = tensor(input.ImagePositions.Select(p => (long)p).ToArray(), device: model.Device);
        _removed = _embeds[0].index_select(0, _positions).mean([0]);
        _layout = input.ImageLayout;
        Patches = input.ImagePositions.Length;
    }

    public int TargetId { get; }
    /// <summary>Image tokens P (the class token, with strategy full, included): the length of every per-patch map.</summary>
    public int Patches { get; }
    public int BatchSize { get; }
    public Device Device => _embeds.device;

    /// <summary>log p(target) at the last position for a batch of embeddings [B, T, D] -> [B] (float64 on the host).</summary>
    public double[] TargetLogProbs(Tensor embeds)
    {
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var results = new List<double>();
        for (long start = 0; start < embeds.shape[0]; start += BatchSize)
        {
            var chunk = embeds.narrow(0, start, Math.Min(BatchSize, embeds.shape[0] - start));
            var logits = _model.ForwardEmbeds(chunk);                                   // [b, 1, V]
            results.AddRange(logits[.., 0].log_softmax(-1)[.., TargetId].to(ScalarType.Float64).cpu().data<double>().ToArray());
        }
        return results.ToArray();
    }

    public double OriginalLogProb() => TargetLogProbs(_embeds)[0];

    /// <summary>
    /// Embeddings with, for each row of <paramref name="removeMask"/> [B, P] (true = remove), those
    /// image tokens replaced by the removed-patch embedding.
    /// </summary>
    public Tensor WithPatchesRemoved(Tensor removeMask)
    {
        long b = removeMask.shape[0];
        var batch = _embeds.expand(b, -1, -1).clone();                                  // [B, T, D]
        var image = batch.index_select(1, _positions);                                  // [B, P, D]
        var replaced = where(removeMask.unsqueeze(-1), _removed.expand_as(image), image);
        return batch.index_copy(1, _positions, replaced);
    }

    /// <summary>Gradient x input on the image-token embeddings: sum_d grad * embedding, per patch [P].</summary>
    public float[] GradientTimesInput()
    {
        using var scope = NewDisposeScope();
        var x = _embeds.detach().clone().requires_grad_(true);
        var lp = _model.ForwardEmbeds(x)[0, 0].log_softmax(-1)[TargetId];
        lp.backward();
        var attribution = (x.grad! * x.detach())[0].index_select(0, _positions).sum([1]);
        return attribution.to(ScalarType.Float32).cpu().data<float>().ToArray();
    }

    /// <summary>
    /// Integrated gradients from the all-removed input (every image token = the removed-patch
    /// embedding) to the real one, Riemann midpoint rule with <paramref name="steps"/> steps,
    /// batched; per patch [P]: sum_d (x - x0) * mean_k grad(x0 + a_k (x - x0)).
    /// </summary>
    public float[] IntegratedGradients(int steps)
    {
        using var scope = NewDisposeScope();
        var x0 = WithPatchesRemoved(ones(1, Patches, dtype: ScalarType.Bool, device: _embeds.device));  // [1, T, D]
        var delta = (_embeds - x0).detach();
        var total = zeros_like(_embeds);
        for (int start = 0; start < steps; start += BatchSize)
        {
            using var inner = NewDisposeScope();
            int b = Math.Min(BatchSize, steps - start);
            var alphas = (arange(start, start + b, dtype: ScalarType.Float32, device: _embeds.device) + 0.5f) / steps; // [b]
            var path = (x0 + alphas.view(-1, 1, 1).to(_embeds.dtype) * delta).detach().requires_grad_(true);     // [b, T, D]
            var lp = _model.ForwardEmbeds(path)[.., 0].log_softmax(-1)[.., TargetId].sum();
            lp.backward();
            total.add_(path.grad!.sum([0], keepdim: true));
        }
        var attribution = (total / steps * delta)[0].index_select(0, _positions).sum([1]);
        return attribution.to(ScalarType.Float32).cpu().data<float>().ToArray();
    }

    /// <summary>
    /// Causal occlusion: for each patch, remove the window x window block of patches centred on
    /// it (on its grid of the image-token layout; the class token alone) and measure the drop
    /// log p(target) - log p(target | removed); [P], larger = more important.
    /// </summary>
    public float[] Occlusion(int window = 1)
    {
        using var scope = NewDisposeScope();
        var mask = new bool[Patches * Patches];                                          // [P (occluded example), P (patch)]
        int lo = -(window - 1) / 2, hi = window / 2;
        for (int p = 0; p < Patches; p++)
        {
            if (_layout.CellOf(p) is not { } cell) { mask[p * Patches + p] = true; continue; }
            var grid = _layout.Grids[cell.Grid];
            for (int dr = lo; dr <= hi; dr++)
                for (int dc = lo; dc <= hi; dc++)
                {
                    int r = cell.Row + dr, c = cell.Col + dc;
                    if (r >= 0 && r < grid.Rows && c >= 0 && c < grid.Cols) mask[p * Patches + grid.TokenIndex(r, c)] = true;
                }
        }
        double original = OriginalLogProb();
        var drops = new float[Patches];
        for (int start = 0; start < Patches; start += BatchSize)
        {
            using var inner = NewDisposeScope();
            int b = Math.Min(BatchSize, Patches - start);
            var m = tensor(mask.AsSpan(start * Patches, b * Patches).ToArray(), [b, Patches], device: _embeds.device);
            var lps = TargetLogProbs(WithPatchesRemoved(m));
            for (int i = 0; i < b; i++) drops[start + i] = (float)(original - lps[i]);
        }
        return drops;
    }
}
