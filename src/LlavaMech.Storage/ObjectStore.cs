using System.Runtime.CompilerServices;

namespace LlavaMech.Storage;

/// <summary>One stored object: its key (relative to the store's root, '/'-separated), size in bytes and last change.</summary>
public sealed record ObjectInfo(string Key, long Size, DateTimeOffset LastModified);

/// <summary>An object's bytes and its version (see <see cref="IObjectStore.GetVersionedAsync"/>).</summary>
public sealed record VersionedObject(byte[] Content, string Version);

/// <summary>
/// A flat namespace of immutable-ish objects under one root (a local folder or a blob container + prefix). Keys are
/// relative, '/'-separated, without "." or ".." segments. Writes are atomic: a reader sees either no object or the whole
/// object, never a partial one. Failures that outlast the retries raise <see cref="StorageException"/>.
/// </summary>
public interface IObjectStore
{
    /// <summary>Where the store lives, for messages: a folder path or container URL (+ prefix), never with credentials.</summary>
    string Location { get; }

    /// <summary>Creates or replaces the object atomically.</summary>
    Task PutAsync(string key, Stream content, CancellationToken ct = default);

    /// <summary>
    /// Creates the object only if no object has that key, atomically: of several concurrent callers exactly one gets
    /// true. False when the key already existed (the existing object is left unchanged). Local: temp file then hard link
    /// (link(2), fails if the name exists); blob: upload with If-None-Match: *.
    /// </summary>
    Task<bool> PutIfAbsentAsync(string key, Stream content, CancellationToken ct = default);

    /// <summary>The object's content (a read stream the caller disposes), or null if there is no such object.</summary>
    Task<Stream?> OpenReadAsync(string key, CancellationToken ct = default);

    Task<bool> ExistsAsync(string key, CancellationToken ct = default);

    /// <summary>Every object whose key starts with <paramref name="prefix"/> ("" = all), in ordinal key order.</summary>
    IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, CancellationToken ct = default);

    /// <summary>Deletes the object; false if it did not exist.</summary>
    Task<bool> DeleteAsync(string key, CancellationToken ct = default);

    /// <summary>
    /// Moves an object to a key that must be free or already hold this same content (an earlier, interrupted move):
    /// local = rename without overwrite; blob = download and re-upload with If-None-Match: * (never a server-side
    /// copy, whose destination records the source URL and with it a SAS), then delete of the source. Idempotent: when the
    /// source is gone and the destination exists it returns false (already moved); true when this call moved it.
    /// Throws <see cref="FileNotFoundException"/> when neither exists.
    /// </summary>
    Task<bool> MoveAsync(string sourceKey, string destinationKey, CancellationToken ct = default);

    /// <summary>
    /// The object's bytes (read whole: for small objects such as grain state) and its version, an opaque token that
    /// changes when the content does; null if there is no such object. Blob: the blob's ETag (new on every write);
    /// local: a SHA-256 of the content.
    /// </summary>
    Task<VersionedObject?> GetVersionedAsync(string key, CancellationToken ct = default);

    /// <summary>
    /// Writes the object only if its version is still <paramref name="expectedVersion"/> (null: only if there is no
    /// object), as one atomic step: of concurrent writers holding the same version exactly one succeeds. Returns the
    /// new version, or null when the stored version differs (the object is left unchanged). Blob: upload with
    /// If-Match (If-None-Match: * for null); local: compare and rename under an exclusive lock of the key. Plain
    /// <see cref="PutAsync"/> does not take part: keys written conditionally must only be written conditionally.
    /// </summary>
    Task<string?> PutIfVersionAsync(string key, ReadOnlyMemory<byte> content, string? expectedVersion, CancellationToken ct = default);

    /// <summary>Deletes the object only if its version is <paramref name="expectedVersion"/> (atomically, as <see cref="PutIfVersionAsync"/>); false when it differs or the object is gone.</summary>
    Task<bool> DeleteIfVersionAsync(string key, string expectedVersion, CancellationToken ct = default);

    /// <summary>The object's path on the local file system when the store is local (DuckDB reads it in place), else null.</summary>
    string? LocalPath(string key);
}

/// <summary>Conveniences over <see cref="IObjectStore"/>.</summary>
public static class ObjectStoreExtensions
{
    public static async Task PutAsync(this IObjectStore store, string key, ReadOnlyMemory<byte> content, CancellationToken ct = default)
    {
        using var ms = AsStream(content);
        await store.PutAsync(key, ms, ct).ConfigureAwait(false);
    }

    public static async Task<bool> PutIfAbsentAsync(this IObjectStore store, string key, ReadOnlyMemory<byte> content, CancellationToken ct = default)
    {
        using var ms = AsStream(content);
        return await store.PutIfAbsentAsync(key, ms, ct).ConfigureAwait(false);
    }

    /// <summary>Uploads a local file (atomically, as <see cref="IObjectStore.PutAsync"/>).</summary>
    public static async Task PutFileAsync(this IObjectStore store, string key, string path, CancellationToken ct = default)
    {
        await using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        await store.PutAsync(key, fs, ct).ConfigureAwait(false);
    }

    /// <summary>The object's bytes, or null if absent.</summary>
    public static async Task<byte[]?> GetBytesAsync(this IObjectStore store, string key, CancellationToken ct = default)
    {
        await using var s = await store.OpenReadAsync(key, ct).ConfigureAwait(false);
        if (s is null) return null;
        using var ms = new MemoryStream();
        await s.CopyToAsync(ms, ct).ConfigureAwait(false);
        return ms.ToArray();
    }

    /// <summary>Copies the object to a local file; false if absent.</summary>
    public static async Task<bool> DownloadToFileAsync(this IObjectStore store, string key, string path, CancellationToken ct = default)
    {
        await using var s = await store.OpenReadAsync(key, ct).ConfigureAwait(false);
        if (s is null) return false;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
        await s.CopyToAsync(fs, ct).ConfigureAwait(false);
        return true;
    }

    public static async Task<List<ObjectInfo>> ListAllAsync(this IObjectStore store, string prefix, CancellationToken ct = default)
    {
        var list = new List<ObjectInfo>();
        await foreach (var o in store.ListAsync(prefix, ct).ConfigureAwait(false))
            list.Add(o);
        return list;
    }

    private static MemoryStream AsStream(ReadOnlyMemory<byte> content) =>
        System.Runtime.InteropServices.MemoryMarshal.TryGetArray(content, out var seg)
            ? new MemoryStream(seg.Array!, seg.Offset, seg.Count, writable: false)
            : new MemoryStream(content.ToArray(), writable: false);
}

/// <summary>Validation and joining of object keys.</summary>
public static class ObjectKeys
{
    /// <summary>Throws unless <paramref name="key"/> is a relative '/'-separated key with no empty, "." or ".." segment.</summary>
    public static string Validate(string key, string name = "key")
    {
        if (string.IsNullOrEmpty(key))
            throw new ArgumentException("object key is empty", name);
        if (key.Contains('\\') || key.Contains('\0') || key.StartsWith('/') || key.EndsWith('/'))
            throw new ArgumentException($"invalid object key '{key}'", name);
        foreach (var seg in key.Split('/'))
            if (seg.Length == 0 || seg == "." || seg == "..")
                throw new ArgumentException($"invalid object key '{key}'", name);
        return key;
    }

    /// <summary>Normalizes a prefix: "" or a '/'-separated path, no leading '/', trailing '/' kept as given.</summary>
    public static string NormalizePrefix(string? prefix)
    {
        prefix = (prefix ?? "").Replace('\\', '/').TrimStart('/');
        if (prefix.Split('/').Any(s => s == "." || s == ".."))
            throw new ArgumentException($"invalid prefix '{prefix}'", nameof(prefix));
        return prefix;
    }

    public static string Join(params string[] parts) =>
        string.Join('/', parts.Where(p => !string.IsNullOrEmpty(p)).Select(p => p.Trim('/')).Where(p => p.Length > 0));
}

internal static class AsyncEnumerableHelpers
{
    public static async IAsyncEnumerable<T> FromEnumerable<T>(IEnumerable<T> items, [EnumeratorCancellation] CancellationToken ct = default)
    {
        foreach (var item in items)
        {
            ct.ThrowIfCancellationRequested();
            yield return item;
        }
        await Task.CompletedTask.ConfigureAwait(false);
    }
}
