using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LlavaMech.Checkpoints;

namespace LlavaMech.Runtime;

/// <summary>What <see cref="ModelFingerprint.ComputeDetailed"/> found.</summary>
/// <param name="Fingerprint">SHA-256, lowercase hex.</param>
/// <param name="FromCache">true when a cache entry for exactly these files (path, size, mtime, ctime, inode) gave it: no byte was read.</param>
/// <param name="CachePath">the cache file read or written; null when none could be written.</param>
/// <param name="BytesHashed">bytes read and hashed (0 from the cache).</param>
/// <param name="Files">the hashed files, in hashing order.</param>
public sealed record FingerprintResult(string Fingerprint, bool FromCache, string? CachePath, long BytesHashed, IReadOnlyList<string> Files);

/// <summary>
/// A model's identity for the output tables (<c>model_fingerprint</c>), <c>summary.json</c>, the commit protocol (which
/// refuses to mix two models in one output location) and reanalysis (whose run id is the fingerprint): SHA-256 over
/// every byte of every file that decides the model's answers, so that any edit of a weight, a token or a setting gives
/// a new fingerprint. Format <see cref="Format"/>; hashed in this order, each file as its name, its length (8 bytes,
/// little-endian) and all its bytes:
/// <list type="number">
/// <item>config.json, then whichever exist of tokenizer.json, tokenizer.model, tokenizer_config.json,
/// special_tokens_map.json, added_tokens.json, preprocessor_config.json (in that order);</item>
/// <item>model.safetensors, or model.safetensors.index.json and the shards it names (in name order).</item>
/// </list>
/// Names, not paths, go into the hash: an identical copy in another folder has the same fingerprint.
/// <para>
/// Hashing reads the whole model (measured: see docs/failure-notes/model.md), so the result is cached in
/// <c>&lt;model&gt;/.llavamech-fingerprint.json</c>, or where that folder is read-only in
/// <c>$XDG_CACHE_HOME/llavamech/fingerprints</c> (<c>~/.cache/llavamech/fingerprints</c>), keyed by the folder's full
/// path and, for every hashed file, its name, size, mtime, ctime, inode and device. On Linux these come from
/// <c>statx(2)</c> (following symlinks, as Hugging Face's hub cache uses them); ctime changes on every write and cannot be
/// set back by <c>touch</c>, so an edit that restores the mtime still misses the cache. Elsewhere, or where statx is
/// missing, the key is size and mtime only. A cache entry is used only when every key matches; an unreadable or
/// corrupt cache is ignored and rewritten, and a cache that cannot be written is skipped (never an error). Files that
/// change while they are hashed are hashed again, once; then the fingerprint fails.
/// </para>
/// </summary>
public static class ModelFingerprint
{
    public const string Format = "llavamech-fingerprint/3";

    /// <summary>The cache file in the model folder.</summary>
    public const string CacheFileName = ".llavamech-fingerprint.json";

    /// <summary>The non-weight files that are hashed when present, in hashing order (config.json must exist).</summary>
    public static readonly IReadOnlyList<string> ConfigFiles =
    [
        "config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "preprocessor_config.json",
    ];

    private const int BufferBytes = 4 << 20;

    /// <summary>The fingerprint of the checkpoint in <paramref name="modelDir"/>. Throws <see cref="CheckpointException"/> when files are missing or unreadable.</summary>
    public static string Compute(string modelDir) => ComputeDetailed(modelDir).Fingerprint;

    /// <summary>The fingerprint with how it was obtained.</summary>
    /// <param name="userCacheDir">the fallback cache folder (default: $XDG_CACHE_HOME/llavamech or ~/.cache/llavamech).</param>
    public static FingerprintResult ComputeDetailed(string modelDir, string? userCacheDir = null)
    {
        string dir = Path.GetFullPath(modelDir);
        if (!Directory.Exists(dir)) throw new CheckpointException($"model directory '{dir}' does not exist");
        var files = HashedFiles(dir);
        var stamps = files.Select(FileStamp.Of).ToList();

        string primary = Path.Combine(dir, CacheFileName);
        string? fallback = FallbackCachePath(dir, userCacheDir);
        foreach (var path in new[] { primary, fallback })
            if (path is not null && ReadCache(path, dir, stamps) is { } cached)
                return new FingerprintResult(cached, true, path, 0, files);

        for (int attempt = 0; ; attempt++)
        {
            var (fingerprint, bytes) = Hash(files);
            var after = files.Select(FileStamp.Of).ToList();
            if (after.SequenceEqual(stamps))
            {
                string? written = WriteCache(primary, dir, stamps, fingerprint) ? primary
                    : fallback is not null && WriteCache(fallback, dir, stamps, fingerprint) ? fallback : null;
                return new FingerprintResult(fingerprint, false, written, bytes, files);
            }
            if (attempt == 1)
            {
                var changed = files.Where((f, i) => after[i] != stamps[i]).Select(Path.GetFileName);
                throw new CheckpointException($"model directory '{dir}': files changed while they were fingerprinted ({string.Join(", ", changed)}); try again once they are written");
            }
            stamps = after;
        }
    }

    /// <summary>The files the fingerprint covers, in hashing order.</summary>
    public static IReadOnlyList<string> HashedFiles(string modelDir)
    {
        string dir = Path.GetFullPath(modelDir);
        string config = Path.Combine(dir, "config.json");
        if (!File.Exists(config)) throw new CheckpointException($"model directory '{dir}' has no config.json");
        var files = ConfigFiles.Select(n => Path.Combine(dir, n)).Where(File.Exists).ToList();
        files.AddRange(WeightFiles(dir));
        return files;
    }

    private static (string Fingerprint, long Bytes) Hash(IReadOnlyList<string> files)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) { sha.AppendData(Encoding.UTF8.GetBytes(s)); sha.AppendData([0]); }
        void Long(long v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteInt64LittleEndian(b, v); sha.AppendData(b); }

        Text(Format);
        var buffer = new byte[BufferBytes];
        long total = 0;
        foreach (var file in files)
        {
            try
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
                long length = stream.Length, read = 0;
                Text(Path.GetFileName(file));
                Long(length);
                int n;
                while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
                {
                    sha.AppendData(buffer, 0, n);
                    read += n;
                }
                if (read != length)
                    throw new CheckpointException($"file '{file}' changed size while it was fingerprinted ({length} bytes, {read} read)");
                total += read;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CheckpointException($"cannot read '{file}' to fingerprint the model: {e.Message}", e);
            }
        }
        return (Convert.ToHexStringLower(sha.GetHashAndReset()), total);
    }

    /// <summary>The weight files in hashing order: model.safetensors, or the index and the shards it names (sorted).</summary>
    internal static IReadOnlyList<string> WeightFiles(string dir)
    {
        string single = Path.Combine(dir, Checkpoint.SingleFileName);
        if (File.Exists(single)) return [single];
        string index = Path.Combine(dir, Checkpoint.IndexFileName);
        if (!File.Exists(index))
            throw new CheckpointException($"model directory '{dir}' has neither {Checkpoint.SingleFileName} nor {Checkpoint.IndexFileName}");
        var shards = new SortedSet<string>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (doc.RootElement.ValueKind == JsonValueKind.Object &&
                doc.RootElement.TryGetProperty("weight_map", out var map) && map.ValueKind == JsonValueKind.Object)
                foreach (var p in map.EnumerateObject())
                    if (p.Value.ValueKind == JsonValueKind.String) shards.Add(p.Value.GetString()!);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"index '{index}' is not valid JSON: {e.Message}", e);
        }
        var files = new List<string> { index };
        foreach (var s in shards)
        {
            if (s.Length == 0 || s != Path.GetFileName(s) || s is "." or "..")
                throw new CheckpointException($"index '{index}' names shard '{s}', which is not a plain file name");
            string path = Path.Combine(dir, s);
            if (!File.Exists(path)) throw new CheckpointException($"shard file '{path}' named by '{index}' does not exist");
            files.Add(path);
        }
        return files;
    }

    // ---- cache ----

    private sealed record CacheEntry(string Format, string ModelDir, List<FileStamp> Files, string Fingerprint);

    /// <summary>The cache file's JSON: snake_case names of the records' properties.</summary>
    private static readonly JsonSerializerOptions CacheJson = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>The fallback cache file of <paramref name="dir"/>: one file per model folder, named by the hash of its full path.</summary>
    internal static string? FallbackCachePath(string dir, string? userCacheDir)
    {
        string? root = userCacheDir;
        if (root is null)
        {
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            root = !string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg) ? Path.Combine(xdg, "llavamech")
                : !string.IsNullOrEmpty(home) ? Path.Combine(home, ".cache", "llavamech") : null;
        }
        if (root is null) return null;
        string key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(dir)))[..32];
        return Path.Combine(root, "fingerprints", key + ".json");
    }

    private static string? ReadCache(string path, string dir, List<FileStamp> stamps)
    {
        try
        {
            if (!File.Exists(path)) return null;
            var entry = JsonSerializer.Deserialize<CacheEntry>(File.ReadAllBytes(path), CacheJson);
            if (entry is null || entry.Format != Format || entry.ModelDir != dir || entry.Files is null || !entry.Files.SequenceEqual(stamps) ||
                entry.Fingerprint is not { Length: 64 } f || !f.All(char.IsAsciiHexDigitLower))
                return null;
            return f;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            return null;   // unreadable or corrupt: hash again and rewrite it
        }
    }

    private static bool WriteCache(string path, string dir, List<FileStamp> stamps, string fingerprint)
    {
        string tmp = path + "." + Environment.ProcessId + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(tmp, JsonSerializer.SerializeToUtf8Bytes(new CacheEntry(Format, dir, stamps, fingerprint), CacheJson));
            File.Move(tmp, path, overwrite: true);   // atomic: a concurrent reader sees the old entry or the new one
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            try { File.Delete(tmp); } catch (Exception d) when (d is IOException or UnauthorizedAccessException) { }
            return false;
        }
    }

    /// <summary>What identifies one version of a file without reading it.</summary>
    internal sealed record FileStamp(string Name, long Size, long MtimeNs, long CtimeNs, ulong Inode, ulong Device)
    {
        public static FileStamp Of(string path)
        {
            string name = Path.GetFileName(path);
            if (OperatingSystem.IsLinux() && Statx.TryGet(path, out var s))
                return new FileStamp(name, s.Size, s.MtimeNs, s.CtimeNs, s.Inode, s.Device);
            try
            {
                var info = new FileInfo(path);
                return new FileStamp(name, info.Length, (info.LastWriteTimeUtc.Ticks - DateTime.UnixEpoch.Ticks) * 100, 0, 0, 0);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CheckpointException($"cannot stat '{path}': {e.Message}", e);
            }
        }
    }

    /// <summary>
    /// statx(2) of glibc (2.28+) or musl (1.2.5+), whose struct layout is the same on every architecture. Resolved by
    /// soname ("libc.so.6" first: on glibc "libc.so" is a linker script, present only with the development package).
    /// </summary>
    private static class Statx
    {
        private const int AtFdCwd = -100;
        private const uint MaskBasicStats = 0x7ff;
        private const uint Needed = 0x40 /* MTIME */ | 0x80 /* CTIME */ | 0x100 /* INO */ | 0x200 /* SIZE */;

        [UnmanagedFunctionPointer(CallingConvention.Cdecl, SetLastError = true)]
        private delegate int StatxFn(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, [In, Out] byte[] buffer);

        private static readonly StatxFn? Fn = Resolve();

        private static StatxFn? Resolve()
        {
            foreach (var name in new[] { "libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1", "libc" })
                if (NativeLibrary.TryLoad(name, out var lib) && NativeLibrary.TryGetExport(lib, "statx", out var fn))
                    return Marshal.GetDelegateForFunctionPointer<StatxFn>(fn);
            return null;
        }

        public static bool TryGet(string path, out (long Size, long MtimeNs, long CtimeNs, ulong Inode, ulong Device) stat)
        {
            stat = default;
            if (Fn is null) return false;
            var b = new byte[256];
            if (Fn(AtFdCwd, path, 0, MaskBasicStats, b) != 0) return false;
            ulong U64(int at) => BitConverter.IsLittleEndian ? BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(at)) : BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(at));
            uint U32(int at) => BitConverter.IsLittleEndian ? BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(at)) : BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(at));
            long Ns(int at) => (long)U64(at) * 1_000_000_000L + U32(at + 8);
            if ((U32(0) & Needed) != Needed) return false;
            stat = ((long)U64(40), Ns(112), Ns(96), U64(32), ((ulong)U32(136) << 32) | U32(140));
            return true;
        }
    }
}
