namespace LlavaMech.Hooks;

/// <summary>
/// The tensors a hooked pass kept, by hook name, already reduced to the plan's positions along the
/// sequence axis (axis 1 for [B, T, ...] hooks, the query axis 2 for patterns). The tensors are
/// detached copies owned by the caller's dispose scope; <see cref="Dispose"/> frees them early. As an
/// <see cref="IHookSet"/> it only reads: every tensor passes through unchanged.
/// </summary>
public sealed class ActivationCache : IDisposable, IHookSet
{
    private readonly Dictionary<string, Tensor> _tensors = new(StringComparer.Ordinal);
    private readonly List<string> _order = new();

    public ActivationCache(CapturePlan plan) { Plan = plan; }

    public CapturePlan Plan { get; }

    /// <summary>Hook names in the order the pass reached them.</summary>
    public IReadOnlyList<string> Order => _order;

    public bool Contains(string hook) => _tensors.ContainsKey(hook);

    public Tensor this[string hook] => _tensors.TryGetValue(hook, out var t)
        ? t
        : throw new KeyNotFoundException($"hook '{hook}' was not captured; the plan holds: {string.Join(", ", Plan.Hooks.Keys.Take(8))}{(Plan.Hooks.Count > 8 ? ", ..." : "")}");

    public bool Wants(string hook) => Plan.Wants(hook);

    /// <summary>Query rows the plan asks of a pattern hook (null: all rows).</summary>
    public long[]? QueryRows(string patternHook, int seqLen) => Plan.PositionsOf(patternHook)?.Resolve(seqLen);

    /// <summary>Pattern hooks planned for a few query rows are computed for those rows alone.</summary>
    public long[]? ReadOnlyRows(string hook, int seqLen) =>
        HookNames.SequenceAxis(hook) == 2 ? QueryRows(hook, seqLen) : null;

    /// <summary>Keeps the planned positions of <paramref name="value"/> (rows already selected by the model are kept as they are); returns it unchanged.</summary>
    public Tensor Apply(string hook, Tensor value, HookContext context)
    {
        if (context.QueryRows is not null) Put(hook, value);
        else Offer(hook, value, HookNames.SequenceAxis(hook), context.Pass.QueryOffset, context.SeqLen);
        return value;
    }

    /// <summary>
    /// Keeps <paramref name="value"/> if the plan wants it, selecting positions along <paramref name="seqAxis"/>. In a pass
    /// after a reused prefix of <paramref name="queryOffset"/> positions (of <paramref name="seqLen"/>), a tensor holding only
    /// the positions after the prefix is selected by the plan's positions in the whole sequence; a plan position inside the
    /// prefix throws, since this pass never computed it.
    /// </summary>
    public void Offer(string hook, Tensor value, int seqAxis = 1, int queryOffset = 0, int seqLen = 0)
    {
        var sel = Plan.PositionsOf(hook);
        if (sel is null) return;
        long[]? idx;
        if (queryOffset > 0 && value.shape[seqAxis] == seqLen - queryOffset)
        {
            var whole = sel.Resolve(seqLen) ?? throw new InvalidOperationException(
                $"hook '{hook}' is planned at every position, but positions 0..{queryOffset - 1} come from a reused prefix: capture it from a full pass");
            idx = whole.Select(p => p - queryOffset).ToArray();
            if (idx.Any(p => p < 0))
                throw new InvalidOperationException($"hook '{hook}' is planned at {sel}, inside the reused prefix of {queryOffset} positions: capture it from a full pass");
        }
        else idx = sel.Resolve((int)value.shape[seqAxis]);
        Tensor kept = idx is null
            ? value.detach().clone()
            : value.detach().index_select(seqAxis, tensor(idx, device: value.device));
        Store(hook, kept);
    }

    /// <summary>Keeps a tensor whose positions were already selected by the producer (e.g. pattern rows).</summary>
    public void Put(string hook, Tensor alreadySelected)
    {
        if (!Plan.Wants(hook)) return;
        Store(hook, alreadySelected.detach());
    }

    /// <summary>Removes a kept tensor and hands it to the caller, who then owns it (and must dispose it).</summary>
    public Tensor Take(string hook)
    {
        var t = this[hook];
        _tensors.Remove(hook);
        _order.Remove(hook);
        return t;
    }

    private void Store(string hook, Tensor t)
    {
        if (_tensors.Remove(hook, out var old)) old.Dispose();
        else _order.Add(hook);
        // The cache owns what it keeps: per-layer dispose scopes inside the pass must not free it.
        t.DetachFromDisposeScope();
        _tensors[hook] = t;
    }

    public void Dispose()
    {
        foreach (var t in _tensors.Values) t.Dispose();
        _tensors.Clear();
        _order.Clear();
    }
}
