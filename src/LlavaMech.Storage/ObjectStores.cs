using System.Diagnostics.Metrics;

namespace LlavaMech.Storage;

/// <summary>
/// The object stores of one owner (a silo: a DI singleton the host disposes), one per location: every shard, job
/// preparation, finalization and the grain state of a silo share the store (and its blob client, connection pool and
/// container check) of their location instead of opening a new one each time. A location is keyed with its
/// credentials as the environment gives them when first opened (hashed, never kept in the clear), so a change of
/// credentials opens a new store. Thread-safe.
/// </summary>
public sealed class ObjectStores : IDisposable
{
    private readonly Func<string, string?>? _environment;
    private readonly BlobStoreOptions? _options;
    private readonly Dictionary<string, IObjectStore> _stores = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private bool _disposed;

    /// <param name="environment">Looks up a credential variable (default: the process environment); see <see cref="OutputLocation.OpenStore"/>.</param>
    public ObjectStores(Func<string, string?>? environment = null, BlobStoreOptions? options = null)
    {
        _environment = environment;
        _options = options;
    }

    /// <summary>Stores this instance holds (one per location and credentials).</summary>
    public int Count
    {
        get { lock (_gate) return _stores.Count; }
    }

    /// <summary>The store of <paramref name="location"/> (see <see cref="OutputLocation.Parse"/>), opened on first use.</summary>
    public IObjectStore Open(string location) => Open(OutputLocation.Parse(location));

    public IObjectStore Open(OutputLocation location)
    {
        string key = location.StoreKey(_environment);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_stores.TryGetValue(key, out var store))
            {
                store = location.OpenStore(_environment, _options);
                _stores.Add(key, store);
            }
            return store;
        }
    }

    /// <summary>Forgets (and disposes, where disposable) every store; later calls to <see cref="Open(string)"/> throw.</summary>
    public void Dispose()
    {
        List<IObjectStore> stores;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            stores = [.. _stores.Values];
            _stores.Clear();
        }
        foreach (var s in stores)
            (s as IDisposable)?.Dispose();
    }
}

/// <summary>
/// The storage's instruments (meter <see cref="MeterName"/>): <c>llavamech.storage.stores_opened</c> counts every
/// object store opened (every <see cref="OutputLocation.OpenStore"/>), tagged with its <c>location</c> (a folder or
/// container URL, never a credential).
/// </summary>
public static class StorageMetrics
{
    public const string MeterName = "LlavaMech.Storage";
    public const string StoresOpenedName = "llavamech.storage.stores_opened";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> StoresOpened = Meter.CreateCounter<long>(StoresOpenedName, "{store}", "object stores opened");

    internal static void StoreOpened(IObjectStore store) =>
        StoresOpened.Add(1, new KeyValuePair<string, object?>("location", store.Location));
}
