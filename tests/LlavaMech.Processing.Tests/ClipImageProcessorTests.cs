using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Processing.Tests;

public sealed class ClipImageProcessorTests
{
    private readonly ITestOutputHelper _out;

    public ClipImageProcessorTests(ITestOutputHelper output) => _out = output;

    internal static string TestData(string file) =>
        Path.Combine(Fixtures.RepoRoot, "tests", "LlavaMech.Processing.Tests", "TestData", file);

    public static IEnumerable<object[]> ImageCases =>
    [
        // model, case, expected geometry
        ["tiny-llava-mha", "circle", new ImageGeometry(84, 84, 84, 84, 0, 0, 84, 84)],
        ["tiny-llava-mha", "square_wide", new ImageGeometry(128, 84, 128, 84, 22, 0, 84, 84)],
        // 640x427 -> short edge 336, long edge int(336 * 640 / 427) = int(503.6) = 503; left = (503 - 336) // 2 = 83
        ["tiny-llava-336", "photo", new ImageGeometry(640, 427, 503, 336, 83, 0, 336, 336)],
    ];

    [Theory]
    [MemberData(nameof(ImageCases))]
    public void Pixel_values_match_the_golden(string model, string name, ImageGeometry geometry)
    {
        var g = Golden.Load(model, name);
        var proc = ClipImageProcessor.FromDirectory(g.Dir);
        var img = proc.Preprocess(Path.Combine(g.Dir, g.Image!));
        Assert.Equal(geometry, img.Geometry);
        Assert.Equal([3L, geometry.CropHeight, geometry.CropWidth], g.Tensors.Shape("pixel_values"));

        var golden = g.Tensors.F32("pixel_values");
        var t5 = g.Tensors.F32("pixel_values_transformers5");
        Assert.Equal(golden.Length, img.PixelValues.Length);
        Assert.Equal(geometry.CropHeight * geometry.CropWidth * 3, img.CroppedRgb.Length);
        double maxErr = MaxAbs(img.PixelValues, golden), maxT5 = MaxAbs(img.PixelValues, t5);
        _out.WriteLine($"{name}: max |ours - pixel_values| = {maxErr:G3}; max |ours - pixel_values_transformers5| = {maxT5:G3}");
        Assert.True(maxErr <= 1e-6, $"max error {maxErr} (the uint8 pipeline should be bit-exact)");
        Assert.True(maxT5 <= 0.02, $"max error vs transformers 5 {maxT5}");

        // The uint8 crop is what the pixel values were computed from.
        var mean = ClipImageProcessorConfig.ClipMean;
        var std = ClipImageProcessorConfig.ClipStd;
        int plane = geometry.CropHeight * geometry.CropWidth;
        for (int i = 0; i < plane; i += 97)
            for (int c = 0; c < 3; c++)
                Assert.Equal((img.CroppedRgb[i * 3 + c] / 255.0 - mean[c]) / std[c], img.PixelValues[c * plane + i], 1e-5);
    }

    private static double MaxAbs(float[] a, float[] b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    [Fact]
    public void Bytes_and_path_give_the_same_result()
    {
        var proc = ClipImageProcessor.FromDirectory(Fixtures.Model("tiny-llava-mha"));
        var path = Fixtures.File("tiny-llava-mha", "wide_scene.png");
        var a = proc.Preprocess(path);
        var b = proc.Preprocess(File.ReadAllBytes(path), "wide_scene.png");
        Assert.Equal(a.PixelValues, b.PixelValues);
        Assert.Equal(a.CroppedRgb, b.CroppedRgb);
        Assert.Equal(a.Geometry, b.Geometry);
    }

    [Fact]
    public void Box_to_patches_on_the_non_square_image()
    {
        // wide_scene.png (128x84): a green square at x 80..120, y 10..50 and a yellow shape within x 10..50, y 40..80 (inclusive).
        // The 84x84 crop starts at x = 22, so 6x6 patches of 14 px cover x 22..105.
        var proc = ClipImageProcessor.FromDirectory(Fixtures.Model("tiny-llava-mha"));
        var img = proc.Preprocess(Fixtures.File("tiny-llava-mha", "wide_scene.png"));
        var g = img.Geometry;

        var green = ClipImageProcessor.BoxToPatches(g, 80, 10, 121, 51, 14);
        // crop x 58..99 (clipped at 84) -> cols 4..5; y 10..51 -> rows 0..3
        Assert.Equal([(0, 4), (0, 5), (1, 4), (1, 5), (2, 4), (2, 5), (3, 4), (3, 5)], green);
        Assert.Equal(PatchesWithColor(img, (30, 170, 40)), green);

        var yellow = ClipImageProcessor.BoxToPatches(g, 10, 40, 51, 81, 14);
        // only x 22..50 is inside the crop -> crop x 0..29 -> cols 0..2; y 40..81 -> rows 2..5
        Assert.Equal(Enumerable.Range(2, 4).SelectMany(r => Enumerable.Range(0, 3).Select(c => (r, c))), yellow);
        Assert.Subset(yellow.ToHashSet(), PatchesWithColor(img, (240, 220, 20)).ToHashSet());

        Assert.Empty(ClipImageProcessor.BoxToPatches(g, 0, 0, 22, 84, 14));      // left of the crop
        Assert.Empty(ClipImageProcessor.BoxToPatches(g, 106, 0, 128, 84, 14));   // right of it
        Assert.Equal([(5, 5)], ClipImageProcessor.BoxToPatches(g, 100, 83, 100, 83, 14)); // a point: crop x 78, y 83
        Assert.Equal([(2, 1)], ClipImageProcessor.BoxToPatches(g, 40, 30, 40, 30, 14)); // a point: x 18 -> col 1, y 30 -> row 2
        Assert.Equal(36, ClipImageProcessor.BoxToPatches(g, 0, 0, 128, 84, 14).Count);
        Assert.Throws<ArgumentException>(() => ClipImageProcessor.BoxToPatches(g, 10, 10, 5, 20, 14));
    }

    [Fact]
    public void Box_to_patches_after_a_resize()
    {
        // photo 640x427 -> 503x336 (scale 0.7869), crop left 83: a box around the original's centre.
        var g = new ImageGeometry(640, 427, 503, 336, 83, 0, 336, 336);
        var patches = ClipImageProcessor.BoxToPatches(g, 300, 200, 340, 227, 14);
        // x: 300*336/427 - 83 = 153.07 .. 184.55 -> cols 10..13; y: 157.38 .. 178.62 -> rows 11..12
        Assert.Equal(Enumerable.Range(11, 2).SelectMany(r => Enumerable.Range(10, 4).Select(c => (r, c))), patches);
    }

    private static List<(int, int)> PatchesWithColor(PreprocessedImage img, (int R, int G, int B) color)
    {
        var g = img.Geometry;
        var set = new SortedSet<(int, int)>();
        for (int y = 0; y < g.CropHeight; y++)
            for (int x = 0; x < g.CropWidth; x++)
            {
                int i = (y * g.CropWidth + x) * 3;
                if (img.CroppedRgb[i] == color.R && img.CroppedRgb[i + 1] == color.G && img.CroppedRgb[i + 2] == color.B)
                    set.Add((y / 14, x / 14));
            }
        return set.ToList();
    }

    [Fact]
    public void Center_crop_pads_with_zeros_like_transformers()
    {
        // No resize, crop 60x40 on a 53x37 image: top = (37 - 40) // 2 = -2, left = (53 - 60) // 2 = -4 (Python floor);
        // transformers pads ceil(3 / 2) = 2 rows above and ceil(7 / 2) = 4 columns left.
        var cfg = new ClipImageProcessorConfig(ShortestEdge: null, ResizeHeight: null, ResizeWidth: null,
            CropHeight: 40, CropWidth: 60, DoResize: false, DoNormalize: false);
        var proc = new ClipImageProcessor(cfg);
        var path = TestData("noise_53x37.png");
        var img = proc.Preprocess(path);
        Assert.Equal(new ImageGeometry(53, 37, 53, 37, -4, -2, 60, 40), img.Geometry);
        var (src, w, h) = ClipImageProcessor.DecodeRgb(File.ReadAllBytes(path), path, long.MaxValue);
        for (int y = 0; y < 40; y++)
            for (int x = 0; x < 60; x++)
                for (int c = 0; c < 3; c++)
                {
                    int sy = y - 2, sx = x - 4;
                    byte expected = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[(sy * w + sx) * 3 + c] : (byte)0;
                    Assert.Equal(expected, img.CroppedRgb[(y * 60 + x) * 3 + c]);
                    Assert.Equal(expected / 255f, img.PixelValues[c * 2400 + y * 60 + x], 6);
                }
    }

    [Fact]
    public void Exact_size_resize_and_tall_images()
    {
        var tall = new ClipImageProcessor(new ClipImageProcessorConfig(20, null, null, 20, 20));
        var g = tall.Preprocess(TestData("noise_1x40.png")).Geometry;
        // 1x40, short edge 1 -> 20: long = int(20 * 40 / 1) = 800; top = (800 - 20) // 2 = 390
        Assert.Equal(new ImageGeometry(1, 40, 20, 800, 0, 390, 20, 20), g);

        var exact = new ClipImageProcessor(new ClipImageProcessorConfig(null, 14, 20, 14, 20));
        var img = exact.Preprocess(TestData("noise_53x37.png"));
        Assert.Equal(new ImageGeometry(53, 37, 20, 14, 0, 0, 20, 14), img.Geometry);
        var (expected, _, _) = ClipImageProcessor.DecodeRgb(File.ReadAllBytes(TestData("resize_53x37_to_20x14.png")), "ref", long.MaxValue);
        Assert.Equal(expected, img.CroppedRgb);
    }
}
