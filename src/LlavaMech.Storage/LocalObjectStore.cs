using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace LlavaMech.Storage;

/// <summary>
/// An object store in a local (or mounted) folder: key "a/b.parquet" is the file &lt;root&gt;/a/b.parquet. Every write
/// goes to a hidden temp file (".&lt;name&gt;.&lt;guid&gt;.tmp", flushed to disk) in the target's folder and is then
/// renamed into place, so readers and globs like "*.parquet" never see a partial file. Put-if-absent links the temp
/// file to the final name with link(2), which fails when the name exists (on Windows: File.Move without overwrite).
/// Conditional writes (<see cref="PutIfVersionAsync"/>) compare the content's SHA-256 and rename while they hold an
/// exclusive lock of the hidden file ".&lt;name&gt;.lock" beside the object (flock, so across processes too).
/// </summary>
public sealed class LocalObjectStore : IObjectStore
{
    private const string TempSuffix = ".tmp";
    private const string LockSuffix = ".lock";

    /// <summary>How long a conditional write waits for the lock of its key before it fails.</summary>
    private static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(30);

    public LocalObjectStore(string rootDir)
    {
        if (string.IsNullOrWhiteSpace(rootDir)) throw new ArgumentException("root folder is empty", nameof(rootDir));
        Root = Path.GetFullPath(rootDir);
        Directory.CreateDirectory(Root);
    }

    /// <summary>The absolute root folder.</summary>
    public string Root { get; }

    public string Location => Root;

    public override string ToString() => Root;

    public string? LocalPath(string key) => PathOf(key);

    private string PathOf(string key)
    {
        ObjectKeys.Validate(key);
        return Path.Combine(Root, key.Replace('/', Path.DirectorySeparatorChar));
    }

    public Task PutAsync(string key, Stream content, CancellationToken ct = default) =>
        Guard("put", key, async () =>
        {
            string path = PathOf(key);
            string tmp = await WriteTempAsync(path, content, ct).ConfigureAwait(false);
            try { File.Move(tmp, path, overwrite: true); }
            catch { TryDelete(tmp); throw; }
            return true;
        });

    public Task<bool> PutIfAbsentAsync(string key, Stream content, CancellationToken ct = default) =>
        Guard("put-if-absent", key, async () =>
        {
            string path = PathOf(key);
            if (File.Exists(path)) return false;
            string tmp = await WriteTempAsync(path, content, ct).ConfigureAwait(false);
            try { return LinkNoReplace(tmp, path); }
            finally { TryDelete(tmp); }
        });

    public Task<Stream?> OpenReadAsync(string key, CancellationToken ct = default) =>
        Guard("get", key, () =>
        {
            try
            {
                Stream s = new FileStream(PathOf(key), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, useAsync: true);
                return Task.FromResult<Stream?>(s);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                return Task.FromResult<Stream?>(null);
            }
        });

    public Task<VersionedObject?> GetVersionedAsync(string key, CancellationToken ct = default) =>
        Guard<VersionedObject?>("get", key, async () =>
        {
            var bytes = await ReadIfExistsAsync(PathOf(key), ct).ConfigureAwait(false);
            return bytes is null ? null : new VersionedObject(bytes, VersionOf(bytes));
        });

    public Task<string?> PutIfVersionAsync(string key, ReadOnlyMemory<byte> content, string? expectedVersion, CancellationToken ct = default) =>
        Guard<string?>("put-if-version", key, async () =>
        {
            string path = PathOf(key);
            await using var held = await LockAsync(path, ct).ConfigureAwait(false);
            if (await CurrentVersionAsync(path, ct).ConfigureAwait(false) != expectedVersion) return null;
            using var stream = new MemoryStream(content.ToArray(), writable: false);
            string tmp = await WriteTempAsync(path, stream, ct).ConfigureAwait(false);
            try { File.Move(tmp, path, overwrite: true); }
            catch { TryDelete(tmp); throw; }
            return VersionOf(content.Span);
        });

    public Task<bool> DeleteIfVersionAsync(string key, string expectedVersion, CancellationToken ct = default) =>
        Guard("delete-if-version", key, async () =>
        {
            string path = PathOf(key);
            await using var held = await LockAsync(path, ct).ConfigureAwait(false);
            if (await CurrentVersionAsync(path, ct).ConfigureAwait(false) != expectedVersion) return false;
            File.Delete(path);   // the folder keeps the lock file: no pruning
            return true;
        });

    private static string VersionOf(ReadOnlySpan<byte> content) => Convert.ToHexStringLower(SHA256.HashData(content));

    private static async Task<string?> CurrentVersionAsync(string path, CancellationToken ct) =>
        await ReadIfExistsAsync(path, ct).ConfigureAwait(false) is { } bytes ? VersionOf(bytes) : null;

    private static async Task<byte[]?> ReadIfExistsAsync(string path, CancellationToken ct)
    {
        try { return await File.ReadAllBytesAsync(path, ct).ConfigureAwait(false); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
    }

    /// <summary>
    /// Holds the key's lock file open with FileShare.None, which .NET takes as an exclusive flock(2) on Unix (a
    /// conflicting open, in this process or another, fails at once): retried until <see cref="LockTimeout"/>.
    /// </summary>
    private static async Task<FileStream> LockAsync(string path, CancellationToken ct)
    {
        string dir = Path.GetDirectoryName(path)!;
        string lockPath = Path.Combine(dir, "." + Path.GetFileName(path) + LockSuffix);
        var clock = Stopwatch.StartNew();
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                Directory.CreateDirectory(dir);
                return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            }
            catch (IOException) when (clock.Elapsed < LockTimeout)
            {
                // Held by another writer (or its folder pruned between the two calls): wait a little.
                await Task.Delay(Math.Min(50, 1 + attempt), ct).ConfigureAwait(false);
            }
        }
    }

    public Task<bool> ExistsAsync(string key, CancellationToken ct = default) => Task.FromResult(File.Exists(PathOf(key)));

    public async IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken ct = default)
    {
        prefix = ObjectKeys.NormalizePrefix(prefix);
        int slash = prefix.LastIndexOf('/');
        string dir = slash < 0 ? Root : Path.Combine(Root, prefix[..slash].Replace('/', Path.DirectorySeparatorChar));
        List<ObjectInfo> items;
        try
        {
            items = !Directory.Exists(dir) ? [] : Directory
                .EnumerateFiles(dir, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = false, AttributesToSkip = 0 })
                .Where(p => !IsHidden(Path.GetFileName(p)))
                .Select(p => (Key: Path.GetRelativePath(Root, p).Replace(Path.DirectorySeparatorChar, '/'), Path: p))
                .Where(x => x.Key.StartsWith(prefix, StringComparison.Ordinal))
                .Select(x => Info(x.Key, x.Path))
                .Where(i => i is not null)
                .Select(i => i!)
                .OrderBy(i => i.Key, StringComparer.Ordinal)
                .ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StorageException($"list '{prefix}' failed in local store {Root}: {e.Message}", Root, e);
        }
        foreach (var i in items)
        {
            ct.ThrowIfCancellationRequested();
            yield return i;
        }
        await Task.CompletedTask.ConfigureAwait(false);
    }

    private static ObjectInfo? Info(string key, string path)
    {
        var fi = new FileInfo(path);
        return fi.Exists ? new ObjectInfo(key, fi.Length, fi.LastWriteTimeUtc) : null;   // gone meanwhile
    }

    public Task<bool> DeleteAsync(string key, CancellationToken ct = default) =>
        Guard("delete", key, () =>
        {
            string path = PathOf(key);
            if (!File.Exists(path)) return Task.FromResult(false);
            File.Delete(path);
            PruneEmptyParents(path);
            return Task.FromResult(true);
        });

    public Task<bool> MoveAsync(string sourceKey, string destinationKey, CancellationToken ct = default) =>
        Guard("move", sourceKey + " -> " + destinationKey, () =>
        {
            string src = PathOf(sourceKey), dst = PathOf(destinationKey);
            for (int attempt = 0; ; attempt++)
            {
                if (!File.Exists(src))
                {
                    if (File.Exists(dst)) return Task.FromResult(false);
                    throw new FileNotFoundException($"neither '{sourceKey}' nor '{destinationKey}' exists in {Root}");
                }
                Directory.CreateDirectory(Path.GetDirectoryName(dst)!);
                try
                {
                    File.Move(src, dst, overwrite: false);
                    PruneEmptyParents(src);
                    return Task.FromResult(true);
                }
                catch (IOException) when (File.Exists(dst))
                {
                    // Moved by someone else (or an earlier interrupted move): drop the source copy.
                    try { File.Delete(src); } catch (IOException) { }
                    PruneEmptyParents(src);
                    return Task.FromResult(false);
                }
                catch (Exception e) when (attempt < 3 && e is FileNotFoundException or DirectoryNotFoundException) { }
            }
        });

    /// <summary>Writes <paramref name="content"/> to a hidden temp file beside <paramref name="path"/>, flushed to disk.</summary>
    private static async Task<string> WriteTempAsync(string path, Stream content, CancellationToken ct)
    {
        string dir = Path.GetDirectoryName(path)!;
        string tmp = Path.Combine(dir, "." + Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N") + TempSuffix);
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                Directory.CreateDirectory(dir);
                await using var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
                await content.CopyToAsync(fs, ct).ConfigureAwait(false);
                await fs.FlushAsync(ct).ConfigureAwait(false);
                fs.Flush(flushToDisk: true);
                return tmp;
            }
            catch (DirectoryNotFoundException) when (attempt < 3)
            {
                // A concurrent delete pruned the empty folder between CreateDirectory and the open: try again.
                if (content.CanSeek) content.Position = 0; else throw;
            }
            catch
            {
                TryDelete(tmp);
                throw;
            }
        }
    }

    /// <summary>Gives <paramref name="tmp"/> the name <paramref name="path"/> unless that name exists; true when it did.</summary>
    private static bool LinkNoReplace(string tmp, string path)
    {
        if (!OperatingSystem.IsWindows())
        {
            if (link(tmp, path) == 0) return true;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EEXIST) return false;
            // No hard links here (some network or FUSE file systems): fall back to a move without overwrite.
        }
        try
        {
            File.Move(tmp, path, overwrite: false);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }
    }

    private const int EEXIST = 17;

    [DllImport("libc", SetLastError = true)]
    private static extern int link(string oldpath, string newpath);

    /// <summary>A temp file of a write in progress, or the lock file of a key: never listed.</summary>
    private static bool IsHidden(string fileName) =>
        fileName.StartsWith('.') && (fileName.EndsWith(TempSuffix, StringComparison.Ordinal) || fileName.EndsWith(LockSuffix, StringComparison.Ordinal));

    private void PruneEmptyParents(string path)
    {
        var dir = Path.GetDirectoryName(path);
        while (dir is not null && dir.Length > Root.Length && dir.StartsWith(Root, StringComparison.Ordinal))
        {
            try
            {
                if (Directory.EnumerateFileSystemEntries(dir).Any()) return;
                Directory.Delete(dir);
            }
            catch (IOException) { return; }
            catch (UnauthorizedAccessException) { return; }
            dir = Path.GetDirectoryName(dir);
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private async Task<T> Guard<T>(string op, string key, Func<Task<T>> body)
    {
        try
        {
            return await body().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && e is not FileNotFoundException)
        {
            throw new StorageException($"{op} '{key}' failed in local store {Root}: {e.Message}", Root, e);
        }
    }
}
