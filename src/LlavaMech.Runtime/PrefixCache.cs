using LlavaMech.Analysis;
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
    private readonly BoundedLru<string, ImagePrefix> _lru;

    /// <param name="capacityBytes">the bound (see <see cref="DefaultBytes"/>).</param>
    public PrefixCache(long capacityBytes) { _lru = new(capacityBytes, StringComparer.Ordinal); }

    /// <summary>The default bound of <c>--prefix-cache-mib 0</c>: 2 GiB on CPU, 4 GiB on a GPU.</summary>
    public static long DefaultBytes(Device device) => device.type == TorchSharp.DeviceType.CUDA ? 4L << 30 : 2L << 30;

    /// <summary>The bound of <paramref name="settings"/> on <paramref name="device"/>.</summary>
    public static long BytesOf(AnalysisSettings settings, Device device) =>
        settings.PrefixCacheMiB > 0 ? (long)settings.PrefixCacheMiB << 20 : DefaultBytes(device);

    public long CapacityBytes { get => _lru.CapacityBytes; set => _lru.CapacityBytes = value; }
    /// <summary>Bytes counted for the entries held.</summary>
    public long Bytes => _lru.Bytes;
    public int Count => _lru.Count;
    public long Hits => _lru.Hits;
    public long Misses => _lru.Misses;
    public long Evictions => _lru.Evictions;

    /// <summary>
    /// The entry of <paramref name="key"/>, built by <paramref name="build"/> when absent after evicting what must go so that
    /// <paramref name="bytes"/> fit; null when <paramref name="bytes"/> exceed the whole bound (the caller runs full passes).
    /// </summary>
    public ImagePrefix? GetOrAdd(string key, long bytes, Func<ImagePrefix> build) => _lru.GetOrAdd(key, bytes, build);

    /// <summary>Evicts least recently used entries until at most <paramref name="bytes"/> are held.</summary>
    public void Trim(long bytes) => _lru.Trim(bytes);

    public void Dispose() => _lru.Dispose();
}
