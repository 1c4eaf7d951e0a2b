namespace LlavaMech.Model.Language;

/// <summary>
/// The keys and values of a token prefix in every decoder layer, as the hook points <c>hook_k</c> and <c>hook_v</c> saw
/// them in a full pass over the prefix ([1, P, KV, d] each, keys before the rotary embedding), so that a later pass over
/// the tokens after it (<see cref="LlamaForCausalLM.Forward"/> with a prefix) computes exactly what a full pass over the
/// whole sequence computes at those positions: the prefix never sees the tokens after it (causal attention).
/// Owns its tensors.
/// </summary>
public sealed class DecoderPrefix : IDisposable
{
    /// <param name="ids">the prefix's token ids (P).</param>
    /// <param name="keys">per layer, [1, P, KV, d].</param><param name="values">per layer, [1, P, KV, d].</param>
    public DecoderPrefix(long[] ids, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values)
    {
        if (keys.Count != values.Count) throw new ArgumentException($"{keys.Count} layers of keys, {values.Count} of values");
        foreach (var t in keys.Concat(values))
            if (t.dim() != 4 || t.shape[0] != 1 || t.shape[1] != ids.Length)
                throw new ArgumentException($"a prefix tensor of [{string.Join(", ", t.shape)}] for a prefix of {ids.Length} tokens; expected [1, {ids.Length}, KV, d]");
        Ids = ids; Keys = keys; Values = values;
        Bytes = keys.Concat(values).Sum(t => t.NumberOfElements * t.ElementSize);
    }

    /// <summary>P token ids.</summary>
    public long[] Ids { get; }
    public int Length => Ids.Length;
    public IReadOnlyList<Tensor> Keys { get; }
    public IReadOnlyList<Tensor> Values { get; }
    /// <summary>Bytes held by the keys and values.</summary>
    public long Bytes { get; }

    /// <summary>Bytes the keys and values of a P-token prefix take: 2 x L x P x KV x d x element size.</summary>
    public static long BytesFor(int length, int layers, int kvHeads, int headDim, int elementSize) =>
        2L * layers * length * kvHeads * headDim * elementSize;

    /// <summary>Whether <paramref name="ids"/> starts with this prefix and has at least one token after it.</summary>
    public bool Precedes(long[] ids) => ids.Length > Ids.Length && ids.AsSpan(0, Ids.Length).SequenceEqual(Ids);

    public void Dispose()
    {
        foreach (var t in Keys.Concat(Values)) t.Dispose();
    }
}
