namespace LlavaMech.Hooks;

/// <summary>
/// A set of sequence positions named the way docs/METHOD.md ("Interventions") names them, resolved per batch row from
/// the pass's <see cref="PassInfo"/>: <c>last</c> = {T-1}; <c>image</c> = the row's image positions (from its
/// <see cref="ImageTokenLayout"/>); <c>text</c> = every other position before T-1, BOS included; <c>all</c>; or a list.
/// </summary>
public sealed record PositionGroup
{
    private PositionGroup(string kind, int[]? positions) { Kind = kind; Positions = positions; }

    /// <summary>"last", "image", "text", "all" or "explicit".</summary>
    public string Kind { get; }
    /// <summary>Explicit positions (negative counts from the end), or null.</summary>
    public int[]? Positions { get; }

    public static PositionGroup Last { get; } = new("last", null);
    public static PositionGroup Image { get; } = new("image", null);
    public static PositionGroup Text { get; } = new("text", null);
    public static PositionGroup All { get; } = new("all", null);
    public static PositionGroup At(IEnumerable<int> positions) => new("explicit", positions.ToArray());

    /// <summary>"last", "image", "text", "all" or a comma-separated list such as "4,5,6,60".</summary>
    public static PositionGroup Parse(string text) => text switch
    {
        "last" => Last,
        "image" => Image,
        "text" => Text,
        "all" => All,
        _ => At(text.Split(',').Select(s => int.TryParse(s.Trim(), out var p) ? p
            : throw new FormatException($"position group '{text}' is not last, image, text, all or a list of positions"))),
    };

    /// <summary>The positions of batch row <paramref name="row"/>, ascending and distinct.</summary>
    public int[] Resolve(PassInfo pass, int row = 0)
    {
        int t = pass.SeqLen;
        switch (Kind)
        {
            case "last": return [t - 1];
            case "all": return Enumerable.Range(0, t).ToArray();
            case "image": return pass.ImagePositions(row);
            case "text":
                var image = new HashSet<int>(pass.ImagePositions(row));
                return Enumerable.Range(0, t - 1).Where(p => !image.Contains(p)).ToArray();
            default:
                return Positions!.Select(p =>
                {
                    int q = p < 0 ? t + p : p;
                    if (q < 0 || q >= t) throw new ArgumentOutOfRangeException(nameof(pass), $"position {p} is outside a sequence of {t}");
                    return q;
                }).Distinct().Order().ToArray();
        }
    }

    public override string ToString() => Kind == "explicit" ? string.Join(",", Positions!) : Kind;
}

/// <summary>How an ablated head's output is replaced (docs/METHOD.md, "Interventions").</summary>
public enum HeadAblation
{
    /// <summary>z_{l,h}[p] = 0 at every position.</summary>
    Zero,
    /// <summary>z_{l,h}[p] = the mean of z_{l,h} over the positions of the same pass.</summary>
    Mean,
}

/// <summary>
/// The causal interventions of docs/METHOD.md ("Interventions") as edits on hook points: head ablation on
/// <c>hook_z</c>, attention knockout on <c>hook_attn_scores</c>, activation patching on <c>hook_resid_pre</c>.
/// Each adds to (and returns) a <see cref="HookEdits"/>, so several combine in one pass.
/// </summary>
public static class Interventions
{
    /// <summary>Ablates query heads (layer, head): their slice of <c>blocks.{l}.attn.hook_z</c> [B, T, H, d] at every position.</summary>
    public static HookEdits AblateHeads(this HookEdits edits, IEnumerable<(int Layer, int Head)> heads, HeadAblation mode)
    {
        foreach (var layer in heads.GroupBy(h => h.Layer))
        {
            var idx = layer.Select(h => (long)h.Head).Distinct().Order().ToArray();
            edits.Add(HookNames.AttnZ(layer.Key), (z, ctx) =>
            {
                RequireFullPass(ctx, "head ablation at every position");
                if (idx[^1] >= z.shape[2]) throw new ArgumentOutOfRangeException(nameof(heads), $"head {idx[^1]} of layer {layer.Key}: the layer has {z.shape[2]} heads");
                var i = tensor(idx, device: z.device);
                if (mode == HeadAblation.Zero) return z.index_fill(2, i, 0);
                var mean = z.index_select(2, i).mean([1], keepdim: true).expand(-1, z.shape[1], -1, -1); // [B, T, k, d]
                return z.index_copy(2, i, mean.contiguous());
            });
        }
        return edits;
    }

    /// <summary>
    /// Knocks out attention from the query positions <paramref name="queries"/> to the key positions <paramref name="keys"/>
    /// in every head of each listed layer: those pre-softmax scores become -inf (the causal mask stays, each row is
    /// renormalized over the keys left). A row that would lose every key it may see is left as it was.
    /// </summary>
    public static HookEdits Knockout(this HookEdits edits, IEnumerable<int> layers, PositionGroup queries, PositionGroup keys)
    {
        foreach (int l in layers.Distinct())
            edits.Add(HookNames.AttnScores(l), (scores, ctx) =>
            {
                if (ctx.QueryRows is not null) throw new InvalidOperationException("knockout needs every query row of the scores");
                var mask = KnockoutMask(ctx.Pass, queries, keys);                        // [B, 1, T, T]
                // After a reused prefix the scores hold the query rows P..T-1 only (a knockout from a prefix row cannot run there).
                if (ctx.Pass.QueryOffset > 0)
                {
                    if (mask.narrow(2, 0, ctx.Pass.QueryOffset).any().item<bool>())
                        throw new InvalidOperationException($"knockout from {queries} edits query rows inside the reused prefix of {ctx.Pass.QueryOffset} positions: run it as a full pass");
                    mask = mask.narrow(2, ctx.Pass.QueryOffset, ctx.Pass.QueryLength);
                }
                return scores.masked_fill(mask.to(scores.device), float.NegativeInfinity);
            });
        return edits;
    }

    /// <summary>An edit that changes the prefix's own computation cannot run after a reused prefix (docs/METHOD.md, "Prefix reuse").</summary>
    private static void RequireFullPass(HookContext ctx, string what)
    {
        if (ctx.Pass.QueryOffset > 0)
            throw new InvalidOperationException($"{what} changes positions inside the reused prefix of {ctx.Pass.QueryOffset}: run it as a full pass");
    }

    /// <summary>[B, 1, T, T] true where a query's score for a key is knocked out (see <see cref="Knockout"/>).</summary>
    public static Tensor KnockoutMask(PassInfo pass, PositionGroup queries, PositionGroup keys)
    {
        int t = pass.SeqLen;
        var mask = new bool[pass.Batch * t * t];
        for (int b = 0; b < pass.Batch; b++)
        {
            var k = keys.Resolve(pass, b);
            foreach (int q in queries.Resolve(pass, b))
            {
                int knocked = 0;
                foreach (int key in k) if (key <= q) knocked++;
                if (knocked == 0 || knocked == q + 1) continue; // nothing to do, or the row would lose every key
                foreach (int key in k) if (key <= q) mask[(b * t + q) * t + key] = true;
            }
        }
        return tensor(mask, [pass.Batch, 1, t, t]);
    }

    /// <summary>
    /// Per-row edits in one batched pass: the edits <paramref name="build"/> adds apply to batch row
    /// <paramref name="row"/> only; every other row keeps the hook's input bit for bit (<c>where</c>, not arithmetic).
    /// Several calls, one per row, run several interventions of the same input as one forward of batch B (each row a
    /// copy of the input). The hook tensors have the batch first ([B, ...]); the inner edits see the whole batch and
    /// their result is kept for the row only.
    /// </summary>
    public static HookEdits ForRow(this HookEdits edits, int row, Action<HookEdits> build)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        var inner = new HookEdits();
        build(inner);
        foreach (var hook in inner.Hooks.ToArray())
            edits.Add(hook, (x, ctx) =>
            {
                if (row >= x.shape[0]) throw new ArgumentOutOfRangeException(nameof(row), $"row {row} of a batch of {x.shape[0]} at '{hook}'");
                var edited = inner.Apply(hook, x, ctx);
                var shape = new long[x.dim()];
                Array.Fill(shape, 1L);
                shape[0] = x.shape[0];
                var rows = new bool[x.shape[0]];
                rows[row] = true;
                return where(tensor(rows).reshape(shape).to(x.device), edited, x);
            });
        return edits;
    }

    /// <summary>
    /// Activation patching: the residual stream at the input of layer <paramref name="layer"/> at <paramref name="positions"/>
    /// is replaced by <paramref name="source"/> there, the source pass's <c>blocks.{l}.hook_resid_pre</c> [B, T, D] (same T).
    /// </summary>
    public static HookEdits PatchResidPre(this HookEdits edits, int layer, PositionGroup positions, Tensor source)
    {
        edits.Add(HookNames.ResidPre(layer), (x, ctx) =>
        {
            RequireFullPass(ctx, "residual patching");
            if (!source.shape.SequenceEqual(x.shape))
                throw new ArgumentException($"the source's residual stream [{string.Join(", ", source.shape)}] does not match the pass's [{string.Join(", ", x.shape)}]", nameof(source));
            var result = x;
            for (int b = 0; b < ctx.Batch; b++)
            {
                var idx = tensor(positions.Resolve(ctx.Pass, b).Select(p => (long)p).ToArray(), device: x.device);
                var row = result[b].index_copy(0, idx, source[b].to(x.dtype).to(x.device).index_select(0, idx));
                result = ctx.Batch == 1 ? row.unsqueeze(0) : result.index_copy(0, tensor(new long[] { b }, device: x.device), row.unsqueeze(0));
            }
            return result;
        });
        return edits;
    }
}
