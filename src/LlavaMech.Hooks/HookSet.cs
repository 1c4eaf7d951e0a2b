namespace LlavaMech.Hooks;

/// <summary>
/// A consumer of hook points. At each point a pass asks <see cref="Wants"/>; only where the answer is yes does it build a
/// <see cref="HookContext"/> and call <see cref="Apply"/>, whose result replaces the tensor for the rest of the pass (return
/// the argument to leave it). A point nobody wants costs one lookup: no clone, no context, and the attention internals
/// (scores, pattern, z) are not even materialized. <see cref="ActivationCache"/> is a consumer that keeps copies,
/// <see cref="HookEdits"/> one that replaces tensors; <see cref="HookChain"/> runs several in one pass.
/// </summary>
public interface IHookSet
{
    /// <summary>Whether this set reads or edits <paramref name="hook"/>.</summary>
    bool Wants(string hook);

    /// <summary>The tensor the pass continues with: <paramref name="value"/> itself or a replacement of the same shape.</summary>
    Tensor Apply(string hook, Tensor value, HookContext context);

    /// <summary>
    /// For a query-row hook ([B, H, Tq, T]: <c>hook_pattern</c>), the rows this set reads when it only reads some and edits
    /// none, so the model may compute those rows alone (the tensor then reaches <see cref="Apply"/> already reduced, with
    /// <see cref="HookContext.QueryRows"/> set). Null: every row (the default, and always for an edit).
    /// </summary>
    long[]? ReadOnlyRows(string hook, int seqLen) => null;
}

/// <summary>Replaces the tensor at a hook point: (tensor, context) -> the tensor the pass continues with.</summary>
public delegate Tensor HookEdit(Tensor value, HookContext context);

/// <summary>
/// What a pass knows about its input, shared by every hook point of the pass: batch size, positions, the attention mask's
/// form and where each example's image tokens are. Built once per hooked pass; its tensors are made on first use.
/// </summary>
public sealed class PassInfo
{
    private Tensor? _positionIds;

    /// <param name="batch">B</param><param name="seqLen">T</param><param name="device">device of the pass's tensors.</param>
    /// <param name="imageLayouts">one entry per batch row (null for a row without an image), or null when the caller did not say.</param>
    /// <param name="queryOffset">P: positions 0..P-1 come from a reused prefix (their keys and values were cached by an earlier
    /// pass), so this pass computes only positions P..T-1 (see <see cref="QueryOffset"/>); 0 for a full pass.</param>
    public PassInfo(int batch, int seqLen, Device device, IReadOnlyList<ImageTokenLayout?>? imageLayouts, int queryOffset = 0)
    {
        if (imageLayouts is not null && imageLayouts.Count != batch)
            throw new ArgumentException($"{imageLayouts.Count} image layouts for a batch of {batch}", nameof(imageLayouts));
        if (queryOffset < 0 || queryOffset >= seqLen)
            throw new ArgumentOutOfRangeException(nameof(queryOffset), queryOffset, $"a reused prefix leaves at least one of the {seqLen} positions to compute");
        Batch = batch; SeqLen = seqLen; Device = device; ImageLayouts = imageLayouts; QueryOffset = queryOffset;
    }

    public int Batch { get; }
    /// <summary>T: the whole sequence's length, a reused prefix included (positions and layouts are in this sequence).</summary>
    public int SeqLen { get; }
    public Device Device { get; }

    /// <summary>
    /// P: the length of a reused prefix (0: a full pass). With P &gt; 0 the position-wise hook points ([B, T - P, ...]: the
    /// residual stream, q, z, MLP; the query rows of scores and pattern) hold positions P..T-1 only, while hook_k, hook_v and
    /// the key axis of scores and pattern hold all T positions, the prefix's from the cache.
    /// </summary>
    public int QueryOffset { get; }

    /// <summary>Rows in the position-wise hook points: T - P.</summary>
    public int QueryLength => SeqLen - QueryOffset;

    /// <summary>Per batch row, where the image tokens are (null: no image in that row); null when unknown (a pass on raw tensors).</summary>
    public IReadOnlyList<ImageTokenLayout?>? ImageLayouts { get; }

    /// <summary>
    /// The attention mask is causal with no padding (batches have equal lengths): query p sees keys 0..p. The rotary
    /// positions are 0..T-1 in every row.
    /// </summary>
    public bool IsCausal => true;

    /// <summary>[T] int64 position ids 0..T-1 (made on first use, owned by the pass).</summary>
    public Tensor PositionIds => _positionIds ??= arange(SeqLen, dtype: ScalarType.Int64, device: Device).DetachFromDisposeScope();

    /// <summary>Sequence positions of row <paramref name="row"/>'s image tokens, ascending; empty without an image.</summary>
    /// <exception cref="InvalidOperationException">The pass was not told the layouts.</exception>
    public int[] ImagePositions(int row = 0) => (ImageLayouts ?? throw new InvalidOperationException(
        "this pass was run on raw tensors without image layouts; pass the prepared inputs' ImageTokenLayout to Forward"))[row]?.Positions ?? [];

    /// <summary>Frees the tensors made on demand.</summary>
    public void Release() { _positionIds?.Dispose(); _positionIds = null; }
}

/// <summary>What a hook sees besides its tensor: which point, which layer, and the pass (<see cref="PassInfo"/>).</summary>
/// <param name="Hook">the hook name (<see cref="HookNames"/>).</param>
/// <param name="Layer">decoder (or vision encoder) layer index; -1 for points outside the layers.</param>
/// <param name="QueryRows">for a query-row hook computed for a few rows only, the rows present (see <see cref="IHookSet.ReadOnlyRows"/>); else null.</param>
public sealed record HookContext(string Hook, int Layer, PassInfo Pass, long[]? QueryRows = null)
{
    public int Batch => Pass.Batch;
    public int SeqLen => Pass.SeqLen;
    public bool IsCausal => Pass.IsCausal;
    public Tensor PositionIds => Pass.PositionIds;
    public IReadOnlyList<ImageTokenLayout?>? ImageLayouts => Pass.ImageLayouts;
    public int[] ImagePositions(int row = 0) => Pass.ImagePositions(row);
}

/// <summary>
/// One hooked pass as the model's modules see it: the consumer and the pass's <see cref="PassInfo"/>. Modules call
/// <c>x = hooks?.Apply(name, x, layer) ?? x</c>; <see cref="Wants"/> lets them skip work only a consumer needs.
/// </summary>
public sealed class HookPass
{
    public HookPass(IHookSet hooks, PassInfo info) { Hooks = hooks; Info = info; }

    public IHookSet Hooks { get; }
    public PassInfo Info { get; }

    public bool Wants(string hook) => Hooks.Wants(hook);

    /// <summary>The tensor to continue with: <paramref name="value"/> unless a consumer wants the point and replaces it.</summary>
    public Tensor Apply(string hook, Tensor value, int layer = -1, long[]? queryRows = null) =>
        Hooks.Wants(hook) ? Hooks.Apply(hook, value, new HookContext(hook, layer, Info, queryRows)) : value;

    /// <summary>A pass for <paramref name="hooks"/> over ids or embeddings of <paramref name="batch"/> x <paramref name="seqLen"/>; null without hooks.</summary>
    /// <param name="queryOffset">the length of a reused prefix (<see cref="PassInfo.QueryOffset"/>; <paramref name="seqLen"/> counts it).</param>
    public static HookPass? For(IHookSet? hooks, int batch, int seqLen, Device device, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null, int queryOffset = 0) =>
        hooks is null ? null : new HookPass(hooks, new PassInfo(batch, seqLen, device, imageLayouts, queryOffset));
}

/// <summary>
/// Edits by hook name: each point's edits run in the order they were added, each receiving the previous one's result.
/// An edit runs in the pass's own mode (inference mode under <c>Forward</c>): return a new tensor rather than writing
/// into the argument, which other parts of the pass may still read.
/// </summary>
public sealed class HookEdits : IHookSet
{
    private readonly Dictionary<string, List<HookEdit>> _edits = new(StringComparer.Ordinal);

    public IReadOnlyCollection<string> Hooks => _edits.Keys;

    public bool IsEmpty => _edits.Count == 0;

    public HookEdits Add(string hook, HookEdit edit)
    {
        ArgumentNullException.ThrowIfNull(edit);
        if (!_edits.TryGetValue(hook, out var list)) _edits[hook] = list = new List<HookEdit>();
        list.Add(edit);
        return this;
    }

    public HookEdits Add(IEnumerable<string> hooks, HookEdit edit)
    {
        foreach (var h in hooks) Add(h, edit);
        return this;
    }

    public bool Wants(string hook) => _edits.ContainsKey(hook);

    public Tensor Apply(string hook, Tensor value, HookContext context)
    {
        if (!_edits.TryGetValue(hook, out var list)) return value;
        foreach (var edit in list)
        {
            var next = edit(value, context);
            if (!next.shape.SequenceEqual(value.shape))
                throw new InvalidOperationException($"the edit at '{hook}' returned shape [{string.Join(", ", next.shape)}] for a tensor of [{string.Join(", ", value.shape)}]");
            value = next;
        }
        return value;
    }
}

/// <summary>Several consumers in one pass, in order: each sees the previous one's result (edits first, then a cache, keeps what the pass used).</summary>
public sealed class HookChain : IHookSet
{
    private readonly IHookSet[] _sets;

    public HookChain(params IHookSet?[] sets) { _sets = sets.Where(s => s is not null).ToArray()!; }

    public bool Wants(string hook)
    {
        foreach (var s in _sets) if (s.Wants(hook)) return true;
        return false;
    }

    public Tensor Apply(string hook, Tensor value, HookContext context)
    {
        foreach (var s in _sets) if (s.Wants(hook)) value = s.Apply(hook, value, context);
        return value;
    }

    /// <summary>Row-limited only when exactly one member wants the hook and it reads a few rows.</summary>
    public long[]? ReadOnlyRows(string hook, int seqLen)
    {
        IHookSet? only = null;
        foreach (var s in _sets)
        {
            if (!s.Wants(hook)) continue;
            if (only is not null) return null;
            only = s;
        }
        return only?.ReadOnlyRows(hook, seqLen);
    }
}
