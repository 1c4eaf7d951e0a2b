namespace LlavaMech.Analysis;

/// <summary>
/// The model's weight directions read through the unembedding, W_U diag(g) w: for a head, its W_O block ([d, V]: the
/// logit change per unit of each of its d value coordinates); for an FFN neuron, its W_down column ([V]: U[:, i] of
/// <see cref="NeuronAttribution"/>). They depend on the model alone, while the position and neuron statistics of every
/// example need them for their heads and candidates: computed once and kept per model, least recently used evicted,
/// bounded in bytes (<see cref="BoundedLru{TKey, TValue}"/>). The frozen scale s multiplies afterwards, so a held direction
/// serves every example; results equal recomputing it, to float rounding. Not thread-safe: one per model.
/// </summary>
public sealed class UnembeddedDirections : IDisposable
{
    private readonly BoundedLru<(bool Neuron, int Layer, int Index, ScalarType Type), Tensor> _lru;

    /// <param name="capacityBytes">the bound (0: nothing is kept, every direction is computed where it is needed).</param>
    public UnembeddedDirections(long capacityBytes) { _lru = new(capacityBytes); }

    /// <summary>The default bound: 1 GiB on CPU, 2 GiB on a GPU (at llava-1.5-7b, 64 heads or 8,192 neurons per GiB).</summary>
    public static long DefaultBytes(Device device) => device.type == DeviceType.CUDA ? 2L << 30 : 1L << 30;

    public long CapacityBytes { get => _lru.CapacityBytes; set { _lru.CapacityBytes = value; _lru.Trim(value); } }
    public long Bytes => _lru.Bytes;
    public long Hits => _lru.Hits;
    public long Misses => _lru.Misses;

    /// <summary>
    /// W_U diag(g) W_O[:, head block] transposed, [d, V] in the readout's dtype on its device, for each of
    /// <paramref name="heads"/>: new tensors in the caller's scope (held ones copied, so later evictions cannot touch them);
    /// the missing ones are made in as few products with the unembedding as the readout's chunk allows (one pass over
    /// W_U for several heads costs less than one each) and kept.
    /// </summary>
    public static Tensor[] Heads(UnembeddedDirections? cache, ReadoutWeights weights, FrozenScaleReadout readout, IReadOnlyList<HeadIndex> heads)
    {
        var result = new Tensor[heads.Count];
        var missing = new List<int>();
        for (int k = 0; k < heads.Count; k++)
            if (cache is not null && cache._lru.TryGet((false, heads[k].Layer, heads[k].Head, readout.ComputeType), out var held)) result[k] = held.clone();
            else missing.Add(k);
        if (missing.Count == 0) return result;
        long d = weights.OProj[0].shape[1] / weights.NumHeads;
        int perProduct = (int)Math.Max(1, readout.RowsPerChunk / d);
        foreach (var group in missing.Chunk(perProduct))
        {
            using var products = NewDisposeScope();                            // the product is freed once its rows are copied
            var blocks = cat(group.Select(k => weights.OProj[heads[k].Layer].narrow(1, heads[k].Head * d, d)
                .to(readout.Device).to(readout.ComputeType)).ToArray(), 1);                                   // [D, n d]
            var made = nn.functional.linear((blocks * readout.Norm.unsqueeze(1)).t(), readout.Unembedding);     // [n d, V]
            for (int j = 0; j < group.Length; j++)
            {
                int k = group[j];
                result[k] = made.narrow(0, j * d, d).clone().MoveToOuterDisposeScope();
                if (cache is null) continue;
                var kept = result[k].clone();
                if (cache._lru.TryAdd((false, heads[k].Layer, heads[k].Head, readout.ComputeType), kept, kept.NumberOfElements * kept.ElementSize))
                    kept.DetachFromDisposeScope();
            }
        }
        return result;
    }

    /// <summary>
    /// U rows W_U diag(g) W_down[:, i] for the neurons <paramref name="neurons"/> of the layers <paramref name="layers"/>
    /// (pairwise, any layers): [n, V], a new tensor in the caller's scope, rows in the order given; held rows are copied,
    /// missing ones computed in ONE product with the unembedding whatever their layers (a pass over W_U is the cost of a
    /// few rows on a CPU) and kept.
    /// </summary>
    public static Tensor Neurons(UnembeddedDirections? cache, ReadoutWeights weights, FrozenScaleReadout readout, int[] layers, long[] neurons)
    {
        if (layers.Length != neurons.Length) throw new ArgumentException($"{layers.Length} layers for {neurons.Length} neurons");
        Tensor Compute(int[] which)                                                 // [which.Length, V], rows in that order
        {
            // W_down columns gathered a run of equal layers at a time (callers pass them sorted by layer: one run per layer).
            var runs = new List<Tensor>();
            for (int a = 0, b; a < which.Length; a = b)
            {
                for (b = a + 1; b < which.Length && layers[which[b]] == layers[which[a]]; b++) { }
                var down = weights.DownProj[layers[which[a]]];
                runs.Add(down.index_select(1, tensor(which[a..b].Select(j => neurons[j]).ToArray(), device: down.device)));
            }
            var cols = cat(runs, 1).to(readout.Device).to(readout.ComputeType);     // [D, n]
            return nn.functional.linear(cols.t() * readout.Norm, readout.Unembedding); // [n, V]
        }
        var all = Enumerable.Range(0, neurons.Length).ToArray();
        if (cache is null || cache.CapacityBytes == 0) return Compute(all);
        var rows = new Tensor?[neurons.Length];
        var missing = new List<int>();
        for (int j = 0; j < neurons.Length; j++)
            if (cache._lru.TryGet((true, layers[j], (int)neurons[j], readout.ComputeType), out var held)) rows[j] = held;
            else missing.Add(j);
        Tensor? fresh = missing.Count > 0 ? Compute(missing.ToArray()) : null;
        for (int k = 0; k < missing.Count; k++) rows[missing[k]] = fresh![k];
        var result = stack(rows!, 0);                                   // copies: evictions below cannot touch it
        for (int k = 0; k < missing.Count; k++)
        {
            var row = fresh![k].clone();
            if (cache._lru.TryAdd((true, layers[missing[k]], (int)neurons[missing[k]], readout.ComputeType), row, row.NumberOfElements * row.ElementSize))
                row.DetachFromDisposeScope();
        }
        return result;
    }

    public void Dispose() => _lru.Dispose();
}
