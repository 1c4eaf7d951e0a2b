using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Processing.Tests;

/// <summary>Resize and decoding against Pillow's own outputs (TestData, made by TestData/make_testdata.py).</summary>
public sealed class ImageDecodingTests
{
    private readonly ITestOutputHelper _out;

    public ImageDecodingTests(ITestOutputHelper output) => _out = output;

    private static (byte[] Rgb, int W, int H) Decode(string file) =>
        ClipImageProcessor.DecodeRgb(File.ReadAllBytes(ClipImageProcessorTests.TestData(file)), file, long.MaxValue);

    public static IEnumerable<object[]> ResizeCases =>
        Directory.GetFiles(Path.Combine(Fixtures.RepoRoot, "tests", "LlavaMech.Processing.Tests", "TestData"), "resize_*.png")
            .Select(f => new object[] { Path.GetFileName(f) }).OrderBy(o => (string)o[0]);

    [Theory]
    [MemberData(nameof(ResizeCases))]
    public void Bicubic_resize_is_bit_exact_with_pillow(string file)
    {
        // resize_<W>x<H>_to_<w>x<h>.png is Image.open("noise_<W>x<H>.png").resize((w, h), Image.BICUBIC)
        var parts = Path.GetFileNameWithoutExtension(file)["resize_".Length..].Split("_to_");
        var (src, w, h) = Decode($"noise_{parts[0]}.png");
        var (expected, ow, oh) = Decode(file);
        Assert.Equal(parts[1], $"{ow}x{oh}");
        var ours = PilResample.Bicubic(src, w, h, 3, ow, oh);
        int diff = 0, worst = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            int d = Math.Abs(ours[i] - expected[i]);
            if (d > 0) diff++;
            worst = Math.Max(worst, d);
        }
        Assert.True(diff == 0, $"{diff} of {ours.Length} samples differ, by up to {worst}");
    }

    [Theory]
    [InlineData("rgba")]
    [InlineData("la")]
    [InlineData("l")]
    [InlineData("p")]
    [InlineData("1")]
    public void Modes_convert_to_rgb_like_pillow(string mode)
    {
        // PIL's convert("RGB"): alpha is dropped (not composited), gray replicated, palette looked up.
        var (ours, w, h) = Decode($"mode_{mode}.png");
        var (expected, ew, eh) = Decode($"convert_{mode}.png");
        Assert.Equal((ew, eh), (w, h));
        Assert.Equal(expected, ours);
    }

    [Theory]
    [InlineData("jpeg_rgb.jpg")]
    [InlineData("jpeg_rgb444.jpg")]
    [InlineData("jpeg_gray.jpg")]
    [InlineData("webp_lossy.webp")]
    [InlineData("webp_lossless.webp")]
    public void Lossy_formats_decode_like_pillow(string file)
    {
        var (ours, w, h) = Decode(file);
        var (expected, ew, eh) = Decode("decoded_" + Path.GetFileNameWithoutExtension(file) + ".png");
        Assert.Equal((ew, eh), (w, h));
        int worst = 0, diff = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            int d = Math.Abs(ours[i] - expected[i]);
            if (d > 0) diff++;
            worst = Math.Max(worst, d);
        }
        _out.WriteLine($"{file}: {diff} of {ours.Length} samples differ from Pillow, max {worst}");
        Assert.True(worst == 0, $"{file}: {diff} samples differ from Pillow, by up to {worst}");
    }

    private static ClipImageProcessor Proc => ClipImageProcessor.FromDirectory(Fixtures.Model("tiny-llava-mha"));

    [Fact]
    public void Missing_file()
    {
        var path = Path.Combine(Path.GetTempPath(), "llavamech-no-such-image.png");
        var e = Assert.Throws<ProcessingException>(() => Proc.Preprocess(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Not_an_image()
    {
        using var tmp = new TempDir();
        var path = tmp.File("notes.png");
        File.WriteAllText(path, "this is a text file, not a picture\n");
        var e = Assert.Throws<ProcessingException>(() => Proc.Preprocess(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("not a recognised image", e.Message);

        File.WriteAllBytes(path, []);
        e = Assert.Throws<ProcessingException>(() => Proc.Preprocess(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("empty", e.Message);
    }

    [Fact]
    public void Truncated_png()
    {
        var png = File.ReadAllBytes(Fixtures.File("tiny-llava-336", "photo_640x427.png"));
        var e = Assert.Throws<ProcessingException>(() => Proc.Preprocess(png[..(png.Length / 2)], "half.png"));
        Assert.Contains("half.png", e.Message);
        Assert.Contains("truncated", e.Message);

        e = Assert.Throws<ProcessingException>(() => Proc.Preprocess(png[..20], "header.png"));
        Assert.Contains("header.png", e.Message);
    }

    [Fact]
    public void Corrupt_png()
    {
        // Overwrite the middle of the compressed pixel data (IDAT) with garbage.
        var png = File.ReadAllBytes(Fixtures.File("tiny-llava-336", "photo_640x427.png"));
        var rnd = new Random(5);
        for (int i = 2000; i < 6000; i++) png[i] = (byte)rnd.Next(256);
        var e = Assert.Throws<ProcessingException>(() => Proc.Preprocess(png, "corrupt.png"));
        Assert.Contains("corrupt.png", e.Message);
        Assert.Matches("corrupt|truncated", e.Message);
    }

    [Fact]
    public void Over_max_pixels_is_refused_from_the_header()
    {
        var proc = Proc.WithMaxPixels(100_000);
        var path = Fixtures.File("tiny-llava-336", "photo_640x427.png");
        var e = Assert.Throws<ProcessingException>(() => proc.Preprocess(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("640x427", e.Message);
        Assert.Contains("273280", e.Message);
        Assert.Contains("100000", e.Message);

        // A header that claims 100000 x 100000 pixels with no data behind it: refused before decoding.
        var bomb = File.ReadAllBytes(Fixtures.File("tiny-llava-mha", "red_circle.png"));
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bomb.AsSpan(16), 100_000);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bomb.AsSpan(20), 100_000);
        FixIhdrCrc(bomb);
        e = Assert.Throws<ProcessingException>(() => Proc.Preprocess(bomb, "bomb.png"));
        Assert.Contains("bomb.png", e.Message);
        Assert.Contains("decompression-bomb", e.Message);
    }

    private static void FixIhdrCrc(byte[] png) =>
        // IHDR chunk: length at 8, type at 12, data 16..28, CRC (over type + data) at 29.
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(29), PngHeader.Crc32(png.AsSpan(12, 17)));

    [Fact]
    public void A_png_with_a_bad_ihdr_crc_says_so()
    {
        var png = File.ReadAllBytes(Fixtures.File("tiny-llava-mha", "red_circle.png"));
        Assert.Null(PngHeader.Problem(png, "red_circle.png"));
        png[32] ^= 0xFF;   // last CRC byte of IHDR
        var e = Assert.Throws<ProcessingException>(() => Proc.Preprocess(png, "badcrc.png"));
        Assert.StartsWith("PNG badcrc.png: IHDR chunk CRC mismatch (stored 0x", e.Message);
        FixIhdrCrc(png);
        Assert.NotEmpty(Proc.Preprocess(png, "fixed.png").PixelValues);   // the same bytes with the CRC repaired decode
    }

    [Fact]
    public void Config_errors()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<ProcessingException>(() => ClipImageProcessor.FromDirectory(tmp.Path));
        Assert.Contains(tmp.File("preprocessor_config.json"), e.Message);
        Assert.Contains("not found", e.Message);

        var cfg = tmp.File("preprocessor_config.json");
        File.WriteAllText(cfg, "{ \"size\": ");
        e = Assert.Throws<ProcessingException>(() => ClipImageProcessor.FromDirectory(tmp.Path));
        Assert.Contains(cfg, e.Message);
        Assert.Contains("invalid JSON", e.Message);

        File.WriteAllText(cfg, "{ \"size\": {\"shortest_edge\": 84}, \"crop_size\": {\"height\": 84, \"width\": 84}, \"resample\": 2 }");
        e = Assert.Throws<ProcessingException>(() => ClipImageProcessor.FromDirectory(tmp.Path));
        Assert.Contains("resample is 2", e.Message);

        File.WriteAllText(cfg, "{ \"size\": {\"shortest_edge\": \"big\"} }");
        e = Assert.Throws<ProcessingException>(() => ClipImageProcessor.FromDirectory(tmp.Path));
        Assert.Contains(cfg, e.Message);

        File.WriteAllText(cfg, "{ \"size\": {\"shortest_edge\": 84}, \"image_mean\": [0.5, 0.5] }");
        e = Assert.Throws<ProcessingException>(() => ClipImageProcessor.FromDirectory(tmp.Path));
        Assert.Contains("image_mean must have 3 values", e.Message);

        File.WriteAllText(cfg, "{ \"size\": {\"shortest_edge\": 0} }");
        e = Assert.Throws<ProcessingException>(() => ClipImageProcessor.FromDirectory(tmp.Path));
        Assert.Contains("shortest_edge must be positive", e.Message);

        // Old-style integer sizes and Hugging Face defaults for absent keys.
        File.WriteAllText(cfg, "{ \"size\": 224, \"crop_size\": 224 }");
        var p = ClipImageProcessor.FromDirectory(tmp.Path);
        Assert.Equal(224, p.Config.ShortestEdge);
        Assert.Equal((224, 224), (p.Config.CropHeight, p.Config.CropWidth));
        Assert.True(p.Config.DoNormalize);
    }
}
