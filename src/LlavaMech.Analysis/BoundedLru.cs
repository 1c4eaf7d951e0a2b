namespace LlavaMech.Analysis;

/// <summary>
/// A least-recently-used cache bounded in bytes: each entry is counted at the size its caller gives, and the least recently
/// used entries are evicted (and disposed) to make room. Not thread-safe: one per model, on the thread that owns it.
/// Used for the reused image prefixes of the pipeline and for the model's unembedded weight directions
/// (<see cref="UnembeddedDirections"/>).
/// </summary>
public sealed class BoundedLru<TKey, TValue> : IDisposable where TKey : notnull where TValue : IDisposable
{
    private readonly LinkedList<(TKey Key, TValue Value, long Bytes)> _lru = new();
    private readonly Dictionary<TKey, LinkedListNode<(TKey Key, TValue Value, long Bytes)>> _byKey;

    public BoundedLru(long capacityBytes, IEqualityComparer<TKey>? comparer = null)
    {
        CapacityBytes = capacityBytes;
        _byKey = new(comparer);
    }

    /// <summary>The bound; lowering it takes effect at the next <see cref="Trim"/> or insertion.</summary>
    public long CapacityBytes { get; set; }
    /// <summary>Bytes counted for the entries held.</summary>
    public long Bytes { get; private set; }
    public int Count => _lru.Count;
    public long Hits { get; private set; }
    public long Misses { get; private set; }
    public long Evictions { get; private set; }

    /// <summary>The entry of <paramref name="key"/>, made most recently used (counts a hit or a miss).</summary>
    public bool TryGet(TKey key, out TValue value)
    {
        if (_byKey.TryGetValue(key, out var node))
        {
            Hits++;
            _lru.Remove(node);
            _lru.AddFirst(node);
            value = node.Value.Value;
            return true;
        }
        Misses++;
        value = default!;
        return false;
    }

    /// <summary>
    /// Holds <paramref name="value"/> under <paramref name="key"/> after evicting what must go so that <paramref name="bytes"/>
    /// fit. False (the caller keeps ownership of the value) when <paramref name="bytes"/> exceed the whole bound or the key is held.
    /// </summary>
    public bool TryAdd(TKey key, TValue value, long bytes)
    {
        if (bytes > CapacityBytes || _byKey.ContainsKey(key)) return false;
        Trim(CapacityBytes - bytes);
        _byKey[key] = _lru.AddFirst((key, value, bytes));
        Bytes += bytes;
        return true;
    }

    /// <summary>
    /// The entry of <paramref name="key"/>, built by <paramref name="build"/> when absent after evicting what must go so that
    /// <paramref name="bytes"/> (the entry's largest size, known before it is built) fit; default when <paramref name="bytes"/>
    /// exceed the whole bound (nothing is built).
    /// </summary>
    public TValue? GetOrAdd(TKey key, long bytes, Func<TValue> build)
    {
        if (TryGet(key, out var held)) return held;
        if (bytes > CapacityBytes) return default;
        Trim(CapacityBytes - bytes);
        var value = build();
        TryAdd(key, value, bytes);
        return value;
    }

    /// <summary>Evicts least recently used entries until at most <paramref name="bytes"/> are held.</summary>
    public void Trim(long bytes)
    {
        while (Bytes > bytes && _lru.Last is { } last)
        {
            _lru.RemoveLast();
            _byKey.Remove(last.Value.Key);
            Bytes -= last.Value.Bytes;
            last.Value.Value.Dispose();
            Evictions++;
        }
    }

    public void Dispose() => Trim(0);
}
