using System.Text.Json;
using LlavaMech.Checkpoints;
using LlavaMech.Runtime;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// The fingerprint hashes every byte of the files that decide the model's answers (an edit anywhere in any weight is a
/// new model), names but not paths (a copy is the same model), and is cached by path, size, mtime, ctime and inode.
/// </summary>
public class ModelFingerprintTests : IDisposable
{
    private readonly TempDir _tmp = new("llavamech-fingerprint-");

    public void Dispose() => _tmp.Dispose();

    /// <summary>A copy of the tiny model (no goldens, no cache file) in a folder of its own.</summary>
    private string CopyModel(string name)
    {
        string dir = _tmp.Sub(name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(TestData.TinyModel))
        {
            string n = Path.GetFileName(f);
            if (n.StartsWith("golden_", StringComparison.Ordinal) || n == ModelFingerprint.CacheFileName) continue;
            File.Copy(f, Path.Combine(dir, n));
            File.SetAttributes(Path.Combine(dir, n), FileAttributes.Normal);
        }
        return dir;
    }

    private string UserCache => _tmp.Sub("user-cache");

    private FingerprintResult Fp(string dir) => ModelFingerprint.ComputeDetailed(dir, UserCache);

    /// <summary>Swaps rows <paramref name="a"/> and <paramref name="b"/> of a 2-D tensor in place: same header, same bytes overall.</summary>
    private static void SwapRows(string file, string tensor, int a, int b)
    {
        long dataStart, begin, rowBytes;
        using (var f = SafetensorsFile.Open(file))
        {
            var e = f.Tensors[tensor];
            dataStart = f.DataStart;
            begin = e.Begin;
            rowBytes = e.ByteLength / e.Shape[0];
        }
        var bytes = File.ReadAllBytes(file);
        var rowA = bytes.AsSpan((int)(dataStart + begin + a * rowBytes), (int)rowBytes).ToArray();
        bytes.AsSpan((int)(dataStart + begin + b * rowBytes), (int)rowBytes).CopyTo(bytes.AsSpan((int)(dataStart + begin + a * rowBytes)));
        rowA.CopyTo(bytes.AsSpan((int)(dataStart + begin + b * rowBytes)));
        File.WriteAllBytes(file, bytes);
    }

    [Fact]
    public void Swapping_two_lm_head_rows_gives_another_fingerprint()
    {
        string original = CopyModel("a"), edited = CopyModel("b");
        // Rows 100 and 200 of the [602, 64] lm_head: away from the start, middle and end of the tensor, where
        // the earlier sampled fingerprint looked, so only hashing every byte can see the swap.
        SwapRows(Path.Combine(edited, "model.safetensors"), "language_model.lm_head.weight", 100, 200);
        Assert.NotEqual(File.ReadAllBytes(Path.Combine(original, "model.safetensors")), File.ReadAllBytes(Path.Combine(edited, "model.safetensors")));
        Assert.Equal(new FileInfo(Path.Combine(original, "model.safetensors")).Length, new FileInfo(Path.Combine(edited, "model.safetensors")).Length);
        Assert.NotEqual(Fp(original).Fingerprint, Fp(edited).Fingerprint);
    }

    [Fact]
    public void An_identical_copy_at_another_path_has_the_same_fingerprint_and_its_own_cache()
    {
        string a = CopyModel("a");
        var first = Fp(a);
        Assert.Matches("^[0-9a-f]{64}$", first.Fingerprint);
        Assert.False(first.FromCache);
        Assert.Equal(Path.Combine(a, ModelFingerprint.CacheFileName), first.CachePath);
        // The copy takes a's cache file along: keyed by a's path, it must not be trusted for b.
        string b = _tmp.Sub("elsewhere/b");
        Directory.CreateDirectory(b);
        foreach (var f in Directory.GetFiles(a)) File.Copy(f, Path.Combine(b, Path.GetFileName(f)));
        var copy = Fp(b);
        Assert.False(copy.FromCache);
        Assert.Equal(first.Fingerprint, copy.Fingerprint);
        Assert.Equal(ModelFingerprint.Compute(TestData.TinyModel), first.Fingerprint);
        // Every file that decides the answers was read, whole.
        Assert.Equal(["config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "preprocessor_config.json", "model.safetensors"],
            first.Files.Select(Path.GetFileName));
        Assert.Equal(first.Files.Sum(f => new FileInfo(f).Length), first.BytesHashed);
    }

    [Fact]
    public void A_second_compute_comes_from_the_cache_and_a_touched_file_misses_it()
    {
        string dir = CopyModel("a");
        var first = Fp(dir);
        var second = Fp(dir);
        Assert.True(second.FromCache);
        Assert.Equal(0, second.BytesHashed);
        Assert.Equal(first.Fingerprint, second.Fingerprint);

        // touch: same bytes, new mtime. Hashed again (same fingerprint), then cached again.
        string weights = Path.Combine(dir, "model.safetensors");
        File.SetLastWriteTimeUtc(weights, File.GetLastWriteTimeUtc(weights).AddSeconds(5));
        var touched = Fp(dir);
        Assert.False(touched.FromCache);
        Assert.True(touched.BytesHashed > 0);
        Assert.Equal(first.Fingerprint, touched.Fingerprint);
        Assert.True(Fp(dir).FromCache);

        // A config edit is a new model.
        string config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e-06"));
        var edited = Fp(dir);
        Assert.False(edited.FromCache);
        Assert.NotEqual(first.Fingerprint, edited.Fingerprint);
    }

    [Fact]
    public void An_edit_that_restores_the_mtime_still_misses_the_cache_on_linux()
    {
        if (!OperatingSystem.IsLinux()) return;   // ctime and inode come from statx(2)
        string dir = CopyModel("a");
        var first = Fp(dir);
        // The cache key holds what statx(2) gave: an inode and a ctime for every file (not the size + mtime fallback).
        using (var doc = JsonDocument.Parse(File.ReadAllBytes(first.CachePath!)))
            foreach (var f in doc.RootElement.GetProperty("files").EnumerateArray())
            {
                Assert.True(f.GetProperty("inode").GetUInt64() > 0, f.ToString());
                Assert.True(f.GetProperty("ctime_ns").GetInt64() > 0, f.ToString());
            }
        string tokenizer = Path.Combine(dir, "tokenizer.json");
        var mtime = File.GetLastWriteTimeUtc(tokenizer);
        var bytes = File.ReadAllBytes(tokenizer);
        bytes[^2] = bytes[^2] == (byte)' ' ? (byte)'\n' : (byte)' ';
        File.WriteAllBytes(tokenizer, bytes);
        File.SetLastWriteTimeUtc(tokenizer, mtime);   // size and mtime as before: only ctime tells
        Assert.Equal(mtime, File.GetLastWriteTimeUtc(tokenizer));
        var after = Fp(dir);
        Assert.False(after.FromCache);
        Assert.NotEqual(first.Fingerprint, after.Fingerprint);
    }

    [Fact]
    public void A_corrupt_cache_is_ignored_and_rewritten()
    {
        string dir = CopyModel("a");
        var first = Fp(dir);
        string cache = first.CachePath!;
        File.WriteAllText(cache, "{ \"format\": \"llavamech-fingerprint/3\", \"files\": [");
        var again = Fp(dir);
        Assert.False(again.FromCache);
        Assert.Equal(first.Fingerprint, again.Fingerprint);
        using (var doc = JsonDocument.Parse(File.ReadAllBytes(cache)))
            Assert.Equal(first.Fingerprint, doc.RootElement.GetProperty("fingerprint").GetString());
        // A well-formed entry with a forged fingerprint for other stamps is not believed either.
        File.WriteAllText(cache, File.ReadAllText(cache).Replace("\"size\": ", "\"size\": 1"));
        Assert.False(Fp(dir).FromCache);
        Assert.True(Fp(dir).FromCache);
    }

    [Fact]
    public void An_unwritable_model_folder_falls_back_to_the_user_cache_and_no_cache_is_no_error()
    {
        string dir = CopyModel("a");
        // A folder where the cache file would go: unwritable for everyone, root included.
        Directory.CreateDirectory(Path.Combine(dir, ModelFingerprint.CacheFileName));
        var first = Fp(dir);
        Assert.NotNull(first.CachePath);
        Assert.StartsWith(Path.Combine(UserCache, "fingerprints"), first.CachePath);
        var second = Fp(dir);
        Assert.True(second.FromCache);
        Assert.Equal(first.CachePath, second.CachePath);

        // No cache can be written anywhere: still a fingerprint.
        string blocked = _tmp.Sub("not-a-folder");
        File.WriteAllText(blocked, "a file where the user cache folder would be");
        var none = ModelFingerprint.ComputeDetailed(dir, blocked);
        Assert.Null(none.CachePath);
        Assert.False(none.FromCache);
        Assert.Equal(first.Fingerprint, none.Fingerprint);
    }
}
