using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using LlavaMech.Datasets.Manifest;
using SkiaSharp;

namespace LlavaMech.Datasets.Tests;

/// <summary>Bounded reading of manifests: huge lines, binary files, non-UTF-8 bytes, absolute image paths and symbolic links.</summary>
public sealed class ManifestLimitTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly string _dataDir;

    public ManifestLimitTests()
    {
        _dataDir = _tmp.File("data");
        Images.WritePng(Path.Combine(_dataDir, "images", "a.png"), 84, 84, SKColors.Red);
        Images.WritePng(_tmp.File("elsewhere/b.png"), 84, 84, SKColors.Blue);
    }

    public void Dispose() => _tmp.Dispose();

    private const string Good = """{"id":"t1","task":"tqa","prompt":"USER: What is the color of the banana?\nASSISTANT: The color of the banana is","expected":"yellow"}""";

    private string Manifest(params byte[][] lines)
    {
        string path = Path.Combine(_dataDir, "manifest.jsonl");
        using var f = File.Create(path);
        foreach (var l in lines) { f.Write(l); f.WriteByte((byte)'\n'); }
        return path;
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void A_50_MB_prompt_line_is_rejected_with_its_start_length_and_hash_without_holding_it()
    {
        // A well-formed line whose prompt is 50 MB: over the default 1 MiB line limit.
        var huge = Utf8("""{"id":"big","task":"tqa","prompt":" """ + new string('x', 50_000_000) + "\"}");
        string path = Manifest(Utf8(Good), huge, Utf8(Good.Replace("t1", "t2")));

        long before = GC.GetAllocatedBytesForCurrentThread();
        var r = ManifestReader.Read(path);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(["t1", "t2"], r.Examples.Select(e => e.Id));
        var reject = Assert.Single(r.Rejects);
        Assert.Equal(2, reject.Line);
        Assert.Contains($"line is {huge.Length} bytes, longer than the limit of {ManifestLimits.DefaultMaxLineBytes} bytes (--max-line-bytes)", reject.Reason);
        Assert.Equal(huge.Length, reject.RawBytes);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(huge)), reject.RawSha256);
        Assert.StartsWith("""{"id":"big","task":"tqa","prompt":" xxx""", reject.RawLine);
        Assert.True(reject.RawLine.Length <= ManifestReader.KeptPrefixBytes, $"kept {reject.RawLine.Length} chars");
        // The 50 MB line (100 MB as a .NET string) is never materialized: what is allocated stays near the 1 MiB line buffer.
        Assert.True(allocated < 8L << 20, $"allocated {allocated / (1 << 20)} MiB reading a 50 MB line");
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))), r.Sha256);
    }

    [Fact]
    public void The_line_limit_is_configurable()
    {
        var line = Utf8(Good);
        string path = Manifest(line);
        Assert.Single(ManifestReader.Read(path, new ManifestLimits(MaxLineBytes: line.Length)).Examples);
        var r = ManifestReader.Read(path, new ManifestLimits(MaxLineBytes: line.Length - 1));
        Assert.Empty(r.Examples);
        Assert.Contains($"line is {line.Length} bytes, longer than the limit of {line.Length - 1} bytes", Assert.Single(r.Rejects).Reason);
    }

    [Fact]
    public void Dev_zero_as_manifest_fails_at_once_naming_the_file_and_line()
    {
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<ManifestFormatException>(() => ManifestReader.Read("/dev/zero"));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        Assert.Contains("'/dev/zero' line 1: NUL byte at column 1", e.Message);
    }

    [Fact]
    public void A_huge_file_without_a_newline_is_one_rejected_line_read_in_bounded_memory()
    {
        string path = Path.Combine(_dataDir, "manifest.jsonl");
        using (var f = File.Create(path))
        {
            var block = Encoding.ASCII.GetBytes(new string('{', 1 << 20));
            for (int i = 0; i < 64; i++) f.Write(block);    // 64 MiB, no newline
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var r = ManifestReader.Read(path);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        var reject = Assert.Single(r.Rejects);
        Assert.Equal(1, reject.Line);
        Assert.Equal(64L << 20, reject.RawBytes);
        Assert.True(allocated < 8L << 20, $"allocated {allocated / (1 << 20)} MiB");
    }

    [Fact]
    public void A_latin1_line_is_rejected_naming_the_line_and_byte()
    {
        var latin1 = Encoding.Latin1.GetBytes("""{"id":"café","task":"tqa","prompt":"p"}""");
        var r = ManifestReader.Read(Manifest(Utf8(Good), latin1));
        Assert.Equal(["t1"], r.Examples.Select(e => e.Id));
        var reject = Assert.Single(r.Rejects);
        Assert.Equal(2, reject.Line);
        Assert.Contains("not valid UTF-8: byte 0xE9 at byte column 11", reject.Reason);
        Assert.Equal(latin1.Length, reject.RawBytes);
    }

    private static string Vqa(string id, string image) =>
        $$"""{"id":"{{id}}","task":"vqa","image":"{{image}}","prompt":"USER: <image>\nWhat is the color of the circle?\nASSISTANT:"}""";

    [Fact]
    public void Absolute_image_paths_are_accepted_only_under_a_named_image_root()
    {
        string outside = _tmp.File("elsewhere/b.png");
        string path = Manifest(Utf8(Vqa("abs", outside)));

        var without = ManifestReader.Read(path);
        Assert.Contains("is absolute (must be relative to the manifest's folder, or lie under a folder named with --image-root)", Assert.Single(without.Rejects).Reason);

        var with = ManifestReader.Read(path, new ManifestLimits(ImageRoots: [_tmp.File("elsewhere")]));
        Assert.Empty(with.Rejects);
        Assert.Equal(outside, Assert.Single(with.Examples).ImagePath);

        var other = ManifestReader.Read(path, new ManifestLimits(ImageRoots: [_tmp.File("other")]));
        Assert.Contains("is absolute and not under any --image-root", Assert.Single(other.Rejects).Reason);
    }

    [Fact]
    public void Symbolic_links_must_lead_inside_the_dataset_folder_or_an_image_root()
    {
        File.CreateSymbolicLink(Path.Combine(_dataDir, "images", "inside.png"), Path.Combine(_dataDir, "images", "a.png"));
        File.CreateSymbolicLink(Path.Combine(_dataDir, "images", "leak.png"), _tmp.File("elsewhere/b.png"));
        Directory.CreateSymbolicLink(Path.Combine(_dataDir, "linked"), _tmp.File("elsewhere"));
        string path = Manifest(Utf8(Vqa("in", "images/inside.png")), Utf8(Vqa("leak", "images/leak.png")), Utf8(Vqa("dir", "linked/b.png")));

        var r = ManifestReader.Read(path);
        Assert.Equal(["in"], r.Examples.Select(e => e.Id));
        Assert.Equal([2, 3], r.Rejects.Select(x => x.Line));
        Assert.All(r.Rejects, x => Assert.Contains($"leads through a symbolic link to '{_tmp.File("elsewhere/b.png")}', outside the dataset folder", x.Reason));

        var allowed = ManifestReader.Read(path, new ManifestLimits(ImageRoots: [_tmp.File("elsewhere")]));
        Assert.Equal(["in", "leak", "dir"], allowed.Examples.Select(e => e.Id));
    }
}
