using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Reports;
using static TorchSharp.torch;

namespace LlavaMech.Explanation;

/// <summary>
/// <c>intervene</c> on one input (docs/METHOD.md, "Interventions"): a clean pass, then the same input with the
/// request's edits, measured at the last position with the real model.
/// <para>
/// Order: the edits are hooks, so they apply where the forward pass reaches their points. Within layer l that is
/// <c>blocks.{l}.hook_resid_pre</c> (patching: the layer's input) first, then <c>blocks.{l}.attn.hook_attn_scores</c>
/// (knockout), then <c>blocks.{l}.attn.hook_z</c> (head ablation); layers in order. A patch at layer l therefore replaces,
/// at its positions, whatever knockouts and ablations of earlier layers did there, and the edits of layers l and later act
/// on the patched stream. The patch's source pass is clean (it runs without the other edits).
/// </para>
/// </summary>
public static class InterventionRunner
{
    /// <summary>How many tokens the top lists hold.</summary>
    public const int TopK = 5;

    /// <summary>
    /// Runs the clean and the edited pass(es) of <paramref name="input"/> (with <c>--patch-layer all</c>, one edited pass per
    /// layer); <paramref name="targetId"/> null: the clean argmax. Every tensor is freed before it returns.
    /// </summary>
    /// <exception cref="InvalidOptionException">an edit that does not fit the model or the input (a head or layer out of
    /// range, an empty position group, a patch source of another length).</exception>
    public static InterventionResult Run(IHookedModel model, ModelInput input, InterventionRequest request, int? targetId = null)
    {
        var applied = Resolve(model, input, request);
        ModelInput? source = null;
        if (request.Patch is { } patch)
        {
            source = model.Prepare(patch.SourcePrompt ?? input.Prompt, patch.SourceImage ?? input.ImagePath);
            if (source.SeqLen != input.SeqLen)
                throw new InvalidOptionException($"the patch source has {source.SeqLen} tokens, the prompt has {input.SeqLen}: patching needs inputs of the same length");
        }
        using var scope = NewDisposeScope();
        var clean = Logits(model, input, null);
        int vocab = (int)clean.shape[0];
        int target = targetId ?? (int)clean.argmax().item<long>();
        if (target < 0 || target >= vocab) throw new InvalidOptionException($"target id {target} is outside the vocabulary of {vocab}");
        var cleanLp = clean.log_softmax(-1);

        int[] patchLayers = request.Patch is null ? [] : request.Patch.Layer is { } only ? [only] : Enumerable.Range(0, model.Layers).ToArray();
        using var sourceCache = new ActivationCache(new CapturePlan().Add(patchLayers.Select(HookNames.ResidPre)));
        if (source is not null) Logits(model, source, sourceCache);

        // One edited pass per patched layer (one pass when there is no patch or a single layer).
        var passes = new List<(int? Layer, Tensor LogProbs)>();
        IEnumerable<int?> editedPasses = patchLayers.Length == 0 ? [null] : patchLayers.Select(l => (int?)l);
        foreach (int? layer in editedPasses)
        {
            var edits = new HookEdits();
            if (layer is { } l) edits.PatchResidPre(l, request.Patch!.Positions, sourceCache[HookNames.ResidPre(l)]);
            if (request.Knockout is { } k) edits.Knockout(k.Layers ?? Enumerable.Range(0, model.Layers), k.Queries, k.Keys);
            if (request.Ablation is { } a) edits.AblateHeads(a.Heads, a.Mode);
            passes.Add((layer, Logits(model, input, edits).log_softmax(-1)));
        }

        double cleanTarget = cleanLp[target].item<double>();
        // NaN or infinity (an fp16 overflow, a corrupt weight) would make every number below meaningless.
        if (!double.IsFinite(cleanTarget) || passes.Any(p => !double.IsFinite(p.LogProbs[target].item<double>())))
            throw new InvalidOperationException($"the {(double.IsFinite(cleanTarget) ? "edited" : "clean")} pass is not finite at the target (dtype {model.DType})");
        var curve = passes.Select(p =>
        {
            var m = Measure(p.LogProbs, target, cleanTarget);
            return new LayerPoint(p.Layer ?? -1, m.EditLogProb, m.Delta, m.EditArgmax, m.Flipped);
        }).ToArray();
        int best = Enumerable.Range(0, curve.Length).MaxBy(i => Math.Abs(curve[i].Delta));
        var edited = passes[best].LogProbs;

        var cleanTop = Top(model, cleanLp);
        var editTop = Top(model, edited);
        var (gapValues, _) = edited.topk(Math.Min(2, vocab));
        var gap = gapValues.data<double>().ToArray();
        var compared = cleanTop.Select(t => t.Id).Concat(editTop.Select(t => t.Id)).Append(target).Distinct()
            .Select(id => new ComparedToken(id, model.TokenText(id), Math.Exp(cleanLp[id].item<double>()), Math.Exp(edited[id].item<double>())))
            .ToArray();
        bool everyLayer = request.Patch is { Layer: null };
        return new InterventionResult(target, model.TokenText(target), cleanTarget, curve[best].EditLogProb, curve[best].Delta, curve[best].Flipped,
            (int)cleanLp.argmax().item<long>(), curve[best].EditArgmax, gap.Length > 1 ? gap[0] - gap[1] : double.PositiveInfinity,
            cleanTop, editTop, compared, applied, input.SeqLen)
        {
            PatchedLayer = everyLayer ? curve[best].Layer : null,
            Curve = everyLayer ? curve : null,
        };
    }

    /// <summary>
    /// The outcome of one edited pass (docs/METHOD.md, "Interventions"): log p(y) of the edited pass, its difference from
    /// the clean log p(y) (<c>delta</c> = edit - clean), the edited argmax and whether it is no longer y (<c>flipped</c>).
    /// <paramref name="editLogProbs"/>: [V] float64 log-softmax of the edited pass's last-position logits. The one
    /// definition <c>intervene</c> and the pipeline's <c>causal_effects</c> / <c>knockout_effects</c> use.
    /// </summary>
    public static EditOutcome Measure(Tensor editLogProbs, int target, double cleanLogProb)
    {
        double lp = editLogProbs[target].item<double>();
        int argmax = (int)editLogProbs.argmax().item<long>();
        return new EditOutcome(lp, lp - cleanLogProb, argmax, argmax != target);
    }

    /// <summary>
    /// Several edited passes of one input as ONE forward of batch n = <paramref name="rows"/>.Count: the input is embedded
    /// once (vision tower included), its embeddings repeated n times, and row i gets the edits <paramref name="rows"/>[i]
    /// adds (<see cref="Interventions.ForRow"/>; the other rows are untouched by them). Returns [n, V] float64 log-softmax
    /// of the last-position logits, in the caller's dispose scope. Row i equals a pass of the input with row i's edits
    /// alone (float rounding of the batched matmuls aside).
    /// </summary>
    public static Tensor EditedLogProbs(LoadedModel model, ModelInput input, IReadOnlyList<Action<HookEdits>> rows, ImagePrefix? prefix = null)
    {
        if (rows.Count == 0) throw new ArgumentException("no edited pass", nameof(rows));
        using var mode = inference_mode();
        var edits = new HookEdits();
        for (int i = 0; i < rows.Count; i++) edits.ForRow(i, rows[i]);
        // Edits confined to the positions after a reused prefix (a knockout from the last position) run after it; an edit
        // that reaches into the prefix throws there (Interventions), so such edits are run without one.
        if (prefix is not null)
            return model.ForwardAfter(prefix.Decoder, Enumerable.Repeat(input, rows.Count).ToArray(), edits)[.., 0].to(ScalarType.Float64).log_softmax(-1);
        var (ids, pixels) = model.ToTensors(input);
        var embeds = model.Embed(ids, pixels, null, [input.ImageLayout]);                                                   // [1, T, D]
        var logits = model.ForwardEmbeds(embeds.expand(rows.Count, -1, -1).contiguous(), edits, null,
            Enumerable.Repeat(input.ImageLayout, rows.Count).ToArray());                         // [n, 1, V]
        return logits[.., 0].to(ScalarType.Float64).log_softmax(-1);
    }

    /// <summary>
    /// Checks the request against the model and the input, and describes each edit as it will apply (the position
    /// groups resolved on this input). Throws <see cref="InvalidOptionException"/> for what cannot apply.
    /// </summary>
    public static AppliedEdit[] Resolve(IHookedModel model, ModelInput input, InterventionRequest request)
    {
        int layers = model.Layers, heads = model.Heads;
        var pass = new PassInfo(1, input.SeqLen, CPU, [input.ImageLayout]);
        void CheckLayer(string option, int l)
        {
            if (l >= layers) throw new InvalidOptionException($"{option}: layer {l} is out of range; the model has {layers} layers (0-{layers - 1})");
        }
        int[] Positions(string option, PositionGroup group)
        {
            int[] p;
            try { p = group.Resolve(pass); }
            catch (ArgumentOutOfRangeException) { throw new InvalidOptionException($"{option}: a position of '{group}' is outside the input's {input.SeqLen} tokens (0-{input.SeqLen - 1}, or negative from the end)"); }
            if (p.Length == 0)
                throw new InvalidOptionException(group.Kind == "image" && input.ImageLayout is null
                    ? $"{option}: the group 'image' is empty: this input has no image (a text-only prompt)"
                    : $"{option}: the group '{group}' has no position in this input ({input.SeqLen} tokens)");
            return p;
        }

        var applied = new List<AppliedEdit>();
        if (request.Patch is { } patch)
        {
            if (patch.Layer is { } l) CheckLayer("--patch-layer", l);
            if (patch.SourceImage is not null && !model.HasVision)
                throw new InvalidOptionException($"--patch-image needs a LLaVA model; this one is a text-only {model.Config.Kind} model (patch with --patch-prompt)");
            applied.Add(new AppliedEdit("patch", "blocks.{l}.hook_resid_pre", patch.Layer is { } one ? [one] : Enumerable.Range(0, layers).ToArray())
            {
                Positions = patch.Positions.ToString(),
                PatchedPositions = Positions("--patch-positions", patch.Positions),
                SourcePrompt = patch.SourcePrompt ?? input.Prompt,
                SourceImage = patch.SourceImage ?? input.ImagePath,
                EveryLayer = patch.Layer is null ? true : null,
            });
        }
        if (request.Knockout is { } k)
        {
            var ls = (k.Layers ?? Enumerable.Range(0, layers).ToArray()).ToArray();
            foreach (int l in ls) CheckLayer("--layers", l);
            var q = Positions("--knockout", k.Queries);
            var keys = Positions("--knockout", k.Keys);
            using var scope = NewDisposeScope();
            int pairs = (int)Interventions.KnockoutMask(pass, k.Queries, k.Keys).sum().item<long>();
            if (pairs == 0)
                throw new InvalidOptionException($"--knockout {k.Queries}:{k.Keys} removes no (query, key) score on this input: keys after their query are masked already, and a query row that would lose every key it sees is kept");
            applied.Add(new AppliedEdit("knockout", "blocks.{l}.attn.hook_attn_scores", ls)
            {
                Queries = k.Queries.ToString(), QueryPositions = q, Keys = k.Keys.ToString(), KeyPositions = keys, KnockedPairs = pairs,
            });
        }
        if (request.Ablation is { } a)
        {
            foreach (var (l, h) in a.Heads)
            {
                CheckLayer("--ablate-heads", l);
                if (h >= heads) throw new InvalidOptionException($"--ablate-heads {l}.{h}: head {h} is out of range; the model has {heads} heads per layer (0-{heads - 1})");
            }
            applied.Add(new AppliedEdit("ablate_heads", "blocks.{l}.attn.hook_z", a.Heads.Select(x => x.Layer).Distinct().Order().ToArray())
            {
                Mode = a.Mode == HeadAblation.Mean ? "mean" : "zero",
                Heads = a.Heads.Select(x => new[] { x.Layer, x.Head }).ToArray(),
            });
        }
        return applied.ToArray();
    }

    /// <summary><c>intervene --out</c>: intervene.json and intervene.png (<see cref="WriteFigure"/>) into <paramref name="outDir"/>, all or nothing.</summary>
    public static void Write(InterventionResult r, string outDir) => OutputFolder.WriteAtomically(outDir, dir =>
    {
        File.WriteAllText(Path.Combine(dir, "intervene.json"), Json.Serialize(r, indented: true));
        WriteFigure(r, dir);
    });

    /// <summary>
    /// The figure of <c>intervene --out</c>: <c>intervene.png</c>, the clean vs edited probabilities of the compared
    /// tokens as bars; with <c>--patch-layer all</c> the change of log p(target) per patched layer. Returns the path.
    /// </summary>
    public static string WriteFigure(InterventionResult r, string outDir)
    {
        var path = Path.Combine(outDir, "intervene.png");
        if (r.Curve is { } curve)
            return InterventionFigure.WriteLayerCurve(path, curve.Select(p => p.Delta).ToArray(),
                $"patching each layer: change of log p('{r.TargetToken}')");
        return InterventionFigure.WriteTokenBars(path, r.ComparedTokens.Select(t => t.Token).ToArray(),
            r.ComparedTokens.Select(t => t.CleanProb).ToArray(), r.ComparedTokens.Select(t => t.EditProb).ToArray(),
            $"target '{r.TargetToken}': log p {r.CleanLogProb:0.000} -> {r.EditLogProb:0.000}{(r.Flipped ? " (flipped)" : "")}");
    }

    /// <summary>Last-position logits [V] as float64.</summary>
    private static Tensor Logits(IHookedModel model, ModelInput input, IHookSet? hooks) =>
        model.Forward([input], hooks)[0, 0].to(ScalarType.Float64);

    private static TopToken[] Top(IHookedModel model, Tensor logProbs)
    {
        var (values, indices) = logProbs.topk(Math.Min(TopK, (int)logProbs.shape[0]));
        var ids = indices.data<long>().ToArray();
        var lps = values.data<double>().ToArray();
        return ids.Select((id, i) => new TopToken((int)id, model.TokenText((int)id), Math.Exp(lps[i]))).ToArray();
    }
}
