using LlavaMech.Explanation;
using LlavaMech.Model;
using static TorchSharp.torch;

namespace LlavaMech.Runtime;

/// <summary>
/// The reused prefixes of one model (<see cref="ImagePrefix"/>: keys and values, projector outputs, lens logits), bounded in
/// bytes: an entry is counted at its largest size before it is computed, and the least recently used entries are evicted
/// to make room. Not thread-safe: one per model, on the thread that owns it.
/// </summary>
public sealed class PrefixCache : IDisposable
{
    private readonly LinkedList<(string Key, ImagePrefix Prefix, long Bytes)> _lru = new();
    private readonly Dictionary<string, LinkedListNode<(string Key, ImagePrefix Prefix, long Bytes)>> _byKey = new(StringComparer.Ordinal);

    /// <param name="capacityBytes">the bound (see <see cref="DefaultBytes"/>).</param>
    public PrefixCache(long capacityBytes) { CapacityBytes = capacityBytes; }

    /// <summary>The default bound of <c>--prefix-cache-mib 0</c>: 2 GiB on CPU, 4 GiB on a GPU.</summary>
    public static long DefaultBytes(Device device) => device.type == TorchSharp.DeviceType.CUDA ? 4L << 30 : 2L << 30;

    /// <summary>The bound of <paramref name="settings"/> on <paramref name="device"/>.</summary>
    public static long BytesOf(AnalysisSettings settings, Device device) =>
        settings.PrefixCacheMiB > 0 ? (long)settings.PrefixCacheMiB << 20 : DefaultBytes(device);

    public long CapacityBytes { get; set; }
    /// <summary>Bytes counted for the entries held.</summary>
    public long Bytes { get; private set; }
    public int Count => _lru.Count;
    public long Hits { get; private set; }
    public long Misses { get; private set; }
    public long Evictions { get; private set; }

    /// <summary>
    /// The entry of <paramref name="key"/>, built by <paramref name="build"/> when absent after evicting what must go so that
    /// <paramref name="bytes"/> fit; null when <paramref name="bytes"/> exceed the whole bound (the caller runs full passes).
    /// </summary>
    public ImagePrefix? GetOrAdd(string key, long bytes, Func<ImagePrefix> build)
    {
        if (_byKey.TryGetValue(key, out var node))
        {
            Hits++;
            _lru.Remove(node);
            _lru.AddFirst(node);
            return node.Value.Prefix;
        }
        Misses++;
        if (bytes > CapacityBytes) return null;
        Trim(CapacityBytes - bytes);
        var prefix = build();
        _byKey[key] = _lru.AddFirst((key, prefix, bytes));
        Bytes += bytes;
        return prefix;
    }

    /// <summary>Evicts least recently used entries until at most <paramref name="bytes"/> are held.</summary>
    public void Trim(long bytes)
    {
        while (Bytes > bytes && _lru.Last is { } last)
        {
            _lru.RemoveLast();
            _byKey.Remove(last.Value.Key);
            Bytes -= last.Value.Bytes;
            last.Value.Prefix.Dispose();
            Evictions++;
        }
    }

    public void Dispose() => Trim(0);
}
