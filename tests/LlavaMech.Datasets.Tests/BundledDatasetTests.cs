using LlavaMech.Datasets.Manifest;
using LlavaMech.Testing;

namespace LlavaMech.Datasets.Tests;

/// <summary>datasets/shapes-colors-mini: readable, complete, and reproducible from its card's command.</summary>
public sealed class BundledDatasetTests : IDisposable
{
    private static readonly string Dir = Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini");
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void Bundled_manifest_reads_clean_with_64_vqa_and_64_tqa_and_boxes_inside_images()
    {
        var read = ManifestReader.Read(Path.Combine(Dir, "manifest.jsonl"));
        Assert.Empty(read.Rejects);
        Assert.Equal(64, read.Examples.Count(e => e.Task == ManifestTasks.Vqa));
        Assert.Equal(64, read.Examples.Count(e => e.Task == ManifestTasks.Tqa));
        Assert.All(read.Examples, e => Assert.NotNull(e.Expected));
        foreach (var ex in read.Examples.Where(e => e.IsVqa))
        {
            Assert.True(File.Exists(ex.ImagePath), ex.ImageRelative);
            var (w, h) = ManifestReader.ReadImageSize(ex.ImagePath!) ?? throw new Xunit.Sdk.XunitException("unreadable " + ex.ImageRelative);
            Assert.Equal((84, 84), (w, h));
            var b = ex.ObjectBox!;
            Assert.True(b[0] >= 0 && b[1] >= 0 && b[2] <= w && b[3] <= h && b[0] < b[2] && b[1] < b[3], $"{ex.Id}: box outside image");
        }
        // The data stays small; the trained toy model next to it (toy-llava/) is "a few MB" at most.
        var files = new DirectoryInfo(Dir).EnumerateFiles("*", SearchOption.AllDirectories).ToList();
        string model = Path.Combine(Dir, "toy-llava") + Path.DirectorySeparatorChar;
        long data = files.Where(f => !f.FullName.StartsWith(model, StringComparison.Ordinal)).Sum(f => f.Length);
        long checkpoint = files.Where(f => f.FullName.StartsWith(model, StringComparison.Ordinal)).Sum(f => f.Length);
        Assert.True(data < 400_000, $"bundled data is {data} bytes");
        Assert.InRange(checkpoint, 100_000, 6_000_000);   // the toy LLaVA: 1.09M float32 parameters, 4.4 MB
    }

    [Fact]
    public void Bundle_is_what_the_command_on_its_card_generates()
    {
        // ./llavamech dataset synth-colors --count 64 --seed 17 --out datasets/shapes-colors-mini
        var gen = SynthColors.Generate(_tmp.Path, 64, 17);
        Assert.Equal(File.ReadAllBytes(Path.Combine(Dir, "manifest.jsonl")), File.ReadAllBytes(gen.ManifestPath));
        foreach (var ex in gen.Examples.Where(e => e.IsVqa))
        {
            // Compare pixels, not PNG bytes, so another zlib build cannot fail this.
            using var fresh = Images.Decode(ex.ImagePath!);
            using var bundled = Images.Decode(Path.Combine(Dir, ex.ImageRelative!));
            Assert.Equal(fresh.Bytes, bundled.Bytes);
        }
    }
}
