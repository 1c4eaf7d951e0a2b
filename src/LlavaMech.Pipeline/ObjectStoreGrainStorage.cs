using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using LlavaMech.Storage;
using Orleans.Serialization;
using Orleans.Storage;

namespace LlavaMech.Pipeline;

/// <summary>
/// Grain state in an <see cref="IObjectStore"/> (a folder every silo sees, or a blob container): one object per grain,
/// <c>grains/&lt;state&gt;/&lt;grain&gt;.bin</c>, holding an ETag and the state in Orleans' binary format. With it, a job
/// survives the loss of the silo its grain lived on. ETags are checked before each write (an activation that lost
/// ownership gets <see cref="InconsistentStateException"/>); the check and the write are not one atomic step, which
/// is enough for grains that have one activation at a time.
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
        var bytes = await store.GetBytesAsync(KeyOf(stateName, grainId)).ConfigureAwait(false);
        if (bytes is null)
        {
            grainState.ETag = null;
            grainState.RecordExists = false;
            return;
        }
        var (etag, payload) = Split(bytes);
        grainState.State = serializer.Deserialize<T>(payload);
        grainState.ETag = etag;
        grainState.RecordExists = true;
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        string key = KeyOf(stateName, grainId);
        await CheckETagAsync(key, grainState.ETag).ConfigureAwait(false);
        string etag = Guid.NewGuid().ToString("N");
        await store.PutAsync(key, Join(etag, serializer.SerializeToArray(grainState.State))).ConfigureAwait(false);
        grainState.ETag = etag;
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        string key = KeyOf(stateName, grainId);
        await CheckETagAsync(key, grainState.ETag).ConfigureAwait(false);
        await store.DeleteAsync(key).ConfigureAwait(false);
        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    private async Task CheckETagAsync(string key, string? expected)
    {
        var current = await store.GetBytesAsync(key).ConfigureAwait(false);
        string? stored = current is null ? null : Split(current).ETag;
        if (stored != expected)
            throw new InconsistentStateException($"grain state {key} in {store.Location} changed under this activation (stored ETag {stored ?? "none"}, expected {expected ?? "none"})",
                stored ?? "", expected ?? "");
    }

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
