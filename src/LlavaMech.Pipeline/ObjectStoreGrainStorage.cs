using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using LlavaMech.Storage;
using Orleans.Serialization;
using Orleans.Storage;

namespace LlavaMech.Pipeline;

/// <summary>
/// Grain state in an <see cref="IObjectStore"/> (a folder every silo sees, or a blob container): one object per grain,
/// <c>grains/&lt;state&gt;/&lt;grain&gt;.bin</c>, holding a write id and the state in Orleans' binary format. With it, a
/// job survives the loss of the silo its grain lived on. The grain's ETag is the object's version, and every write or
/// clear is conditional on it in one step (<see cref="IObjectStore.PutIfVersionAsync"/>: If-Match on a blob, compare
/// and rename under a lock in a folder): a writer whose ETag is stale (another activation wrote since it read) changes
/// nothing and gets <see cref="InconsistentStateException"/>. The write id makes every write's content, and so its
/// version, new.
/// </summary>
public sealed class ObjectStoreGrainStorage(IObjectStore store, Serializer serializer) : IGrainStorage
{
    public IObjectStore Store => store;

    public static string KeyOf(string stateName, GrainId grainId)
    {
        string id = grainId.ToString();
        string safe = new(id.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_').ToArray());
        if (safe.Length > 80) safe = safe[..80];
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)))[..12];
        return $"grains/{Clean(stateName)}/{safe}-{hash}.bin";
    }

    private static string Clean(string s) => new(s.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').ToArray());

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var stored = await store.GetVersionedAsync(KeyOf(stateName, grainId)).ConfigureAwait(false);
        if (stored is null)
        {
            grainState.ETag = null;
            grainState.RecordExists = false;
            return;
        }
        grainState.State = serializer.Deserialize<T>(Split(stored.Content).Payload);
        grainState.ETag = stored.Version;
        grainState.RecordExists = true;
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        string key = KeyOf(stateName, grainId);
        var content = Join(Guid.NewGuid().ToString("N"), serializer.SerializeToArray(grainState.State));
        string version = await store.PutIfVersionAsync(key, content, grainState.ETag).ConfigureAwait(false)
                         ?? throw Changed(key, grainState.ETag);
        grainState.ETag = version;
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        string key = KeyOf(stateName, grainId);
        bool cleared = grainState.ETag is { } etag
            ? await store.DeleteIfVersionAsync(key, etag).ConfigureAwait(false)
            : !await store.ExistsAsync(key).ConfigureAwait(false);   // nothing read, nothing there: nothing to clear
        if (!cleared) throw Changed(key, grainState.ETag);
        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    private InconsistentStateException Changed(string key, string? expected) =>
        new($"grain state {key} in {store.Location} changed under this activation (expected version {expected ?? "none: no state"})",
            "", expected ?? "");

    private static byte[] Join(string etag, byte[] payload)
    {
        var e = Encoding.ASCII.GetBytes(etag);
        var result = new byte[4 + e.Length + payload.Length];
        BinaryPrimitives.WriteInt32LittleEndian(result, e.Length);
        e.CopyTo(result, 4);
        payload.CopyTo(result, 4 + e.Length);
        return result;
    }

    private static (string ETag, byte[] Payload) Split(byte[] bytes)
    {
        if (bytes.Length < 4) throw new InvalidDataException("grain state object is truncated");
        int n = BinaryPrimitives.ReadInt32LittleEndian(bytes);
        if (n < 0 || 4 + n > bytes.Length) throw new InvalidDataException("grain state object has a bad ETag length");
        return (Encoding.ASCII.GetString(bytes, 4, n), bytes[(4 + n)..]);
    }
}
