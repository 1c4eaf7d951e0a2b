using System.Globalization;
using System.Text.Json;
using SkiaSharp;

namespace LlavaMech.Processing;

/// <summary>Where the model's crop lies in the image.</summary>
/// <param name="OriginalWidth">Width of the decoded image.</param>
/// <param name="OriginalHeight">Height of the decoded image.</param>
/// <param name="ResizedWidth">Width after the resize (the original width when there is no resize).</param>
/// <param name="ResizedHeight">Height after the resize.</param>
/// <param name="CropLeft">Left edge of the crop in resized-image pixels; negative where the crop is wider than the image (zero padding).</param>
/// <param name="CropTop">Top edge of the crop in resized-image pixels; negative where padded.</param>
/// <param name="CropWidth">Width of the crop: the model's input width.</param>
/// <param name="CropHeight">Height of the crop: the model's input height.</param>
public sealed record ImageGeometry(int OriginalWidth, int OriginalHeight, int ResizedWidth, int ResizedHeight,
    int CropLeft, int CropTop, int CropWidth, int CropHeight);

/// <summary>One image ready for the vision tower.</summary>
/// <param name="PixelValues">[3, CropHeight, CropWidth] row-major, rescaled and normalized (float32, as the Hugging Face processor computes it).</param>
/// <param name="Geometry">How the original maps onto the crop.</param>
/// <param name="CroppedRgb">[CropHeight, CropWidth, 3] uint8: the crop the model saw, before rescale and normalization (for overlays).</param>
public sealed record PreprocessedImage(float[] PixelValues, ImageGeometry Geometry, byte[] CroppedRgb)
{
    /// <summary>Tiles in <see cref="PixelValues"/> ([Tiles, 3, CropHeight, CropWidth]): 1 for CLIP, 1 + GR*GC for LLaVA-NeXT.</summary>
    public int Tiles { get; init; } = 1;

    /// <summary>LLaVA-NeXT's plan of this image (tiles, unpadding, token count); null for a single CLIP crop.</summary>
    public AnyresPlan? Anyres { get; init; }
}

/// <summary>The settings of a CLIPImageProcessor (<c>preprocessor_config.json</c>), with Hugging Face's defaults.</summary>
/// <param name="ShortestEdge">size.shortest_edge: resize so the short side has this length, keeping the aspect ratio; null when <paramref name="ResizeHeight"/>/<paramref name="ResizeWidth"/> are used.</param>
/// <param name="ResizeHeight">size.height: resize to exactly this height (with size.width).</param>
/// <param name="ResizeWidth">size.width.</param>
public sealed record ClipImageProcessorConfig(
    int? ShortestEdge,
    int? ResizeHeight,
    int? ResizeWidth,
    int CropHeight,
    int CropWidth,
    bool DoResize = true,
    bool DoCenterCrop = true,
    bool DoRescale = true,
    double RescaleFactor = 1.0 / 255,
    bool DoNormalize = true,
    double[]? ImageMean = null,
    double[]? ImageStd = null,
    bool DoConvertRgb = true)
{
    /// <summary>OPENAI_CLIP_MEAN.</summary>
    public static readonly double[] ClipMean = [0.48145466, 0.4578275, 0.40821073];

    /// <summary>OPENAI_CLIP_STD.</summary>
    public static readonly double[] ClipStd = [0.26862954, 0.26130258, 0.27577711];
}

/// <summary>
/// Hugging Face's CLIPImageProcessor (slow, PIL) re-implemented to give the same pixel values:
/// decode (SkiaSharp, no color management, as PIL), convert to RGB (alpha dropped, gray and palette expanded),
/// resize with Pillow's bicubic filter (bit-exact port), center crop (zero padding when the image is smaller),
/// rescale and normalize in float32. Like PIL's <c>Image.open</c>, EXIF orientation is not applied.
/// Checked bit-exact against Pillow for 8-bit PNG (RGB, RGBA, LA, L, P, 1), baseline JPEG and WebP;
/// 16-bit and CMYK images are decoded by Skia's rules, not checked against Pillow.
/// <c>do_convert_rgb: false</c> is ignored: the vision tower needs three channels.
/// </summary>
public sealed class ClipImageProcessor : IImageProcessor
{
    /// <summary>The settings in use.</summary>
    public ClipImageProcessorConfig Config { get; }

    /// <summary>Largest width x height accepted; checked from the image header before any pixel is decoded (decompression-bomb guard).</summary>
    public long MaxPixels { get; init; } = 50_000_000;

    private readonly float[] _mean;
    private readonly float[] _std;

    public ClipImageProcessor(ClipImageProcessorConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Validate(config, "config");
        Config = config;
        _mean = (config.ImageMean ?? ClipImageProcessorConfig.ClipMean).Select(v => (float)v).ToArray();
        _std = (config.ImageStd ?? ClipImageProcessorConfig.ClipStd).Select(v => (float)v).ToArray();
    }

    /// <summary>The same processor with another <see cref="MaxPixels"/>.</summary>
    public ClipImageProcessor WithMaxPixels(long maxPixels) => new(Config) { MaxPixels = maxPixels };

    /// <summary>Reads <c>preprocessor_config.json</c> of a model folder.</summary>
    public static ClipImageProcessor FromDirectory(string modelDir)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        var path = Path.Combine(modelDir, "preprocessor_config.json");
        if (!File.Exists(path))
            throw new ProcessingException(Directory.Exists(modelDir)
                ? $"{path}: file not found (a LLaVA model folder needs preprocessor_config.json for its images)"
                : $"model folder {modelDir} does not exist");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ProcessingException($"{path}: cannot read: {e.Message}", e);
        }
        return new ClipImageProcessor(ParseConfig(bytes, path));
    }

    /// <summary>Parses the JSON of a preprocessor_config.json; <paramref name="nameForErrors"/> is named in errors.</summary>
    public static ClipImageProcessorConfig ParseConfig(byte[] json, string nameForErrors)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ProcessingException($"{nameForErrors}: invalid JSON: {e.Message}", e);
        }
        using (doc)
        {
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object)
                throw new ProcessingException($"{nameForErrors}: expected a JSON object");
            try
            {
                int? shortest = null, height = null, width = null;
                if (r.TryGetProperty("size", out var size) && size.ValueKind != JsonValueKind.Null)
                {
                    if (size.ValueKind == JsonValueKind.Number)
                        shortest = size.GetInt32(); // old configs: "size": 224 means the shortest edge for CLIP
                    else if (size.TryGetProperty("shortest_edge", out var se))
                        shortest = se.GetInt32();
                    else if (size.TryGetProperty("height", out var h) && size.TryGetProperty("width", out var w))
                    {
                        height = h.GetInt32();
                        width = w.GetInt32();
                    }
                    else
                        throw new ProcessingException($"{nameForErrors}: \"size\" needs \"shortest_edge\" or \"height\" and \"width\"");
                }
                else
                {
                    shortest = 224;
                }

                int cropH = 224, cropW = 224;
                if (r.TryGetProperty("crop_size", out var crop) && crop.ValueKind != JsonValueKind.Null)
                {
                    if (crop.ValueKind == JsonValueKind.Number)
                        cropH = cropW = crop.GetInt32();
                    else if (crop.TryGetProperty("height", out var h) && crop.TryGetProperty("width", out var w))
                    {
                        cropH = h.GetInt32();
                        cropW = w.GetInt32();
                    }
                    else
                        throw new ProcessingException($"{nameForErrors}: \"crop_size\" needs \"height\" and \"width\"");
                }

                if (r.TryGetProperty("resample", out var rs) && rs.ValueKind != JsonValueKind.Null && rs.GetInt32() != 3)
                    throw new ProcessingException(
                        $"{nameForErrors}: resample is {rs.GetInt32()}, only 3 (bicubic, as CLIP and LLaVA use) is implemented");

                var cfg = new ClipImageProcessorConfig(
                    shortest, height, width, cropH, cropW,
                    DoResize: Bool(r, "do_resize", true, nameForErrors),
                    DoCenterCrop: Bool(r, "do_center_crop", true, nameForErrors),
                    DoRescale: Bool(r, "do_rescale", true, nameForErrors),
                    RescaleFactor: r.TryGetProperty("rescale_factor", out var rf) && rf.ValueKind != JsonValueKind.Null ? rf.GetDouble() : 1.0 / 255,
                    DoNormalize: Bool(r, "do_normalize", true, nameForErrors),
                    ImageMean: Triple(r, "image_mean", nameForErrors),
                    ImageStd: Triple(r, "image_std", nameForErrors),
                    DoConvertRgb: Bool(r, "do_convert_rgb", true, nameForErrors));
                Validate(cfg, nameForErrors);
                return cfg;
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException or KeyNotFoundException)
            {
                throw new ProcessingException($"{nameForErrors}: a field has the wrong type: {e.Message}", e);
            }
        }
    }

    /// <summary>Reads and preprocesses an image file.</summary>
    public PreprocessedImage Preprocess(string imagePath)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        if (!File.Exists(imagePath))
            throw new ProcessingException($"{imagePath}: image file not found");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(imagePath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ProcessingException($"{imagePath}: cannot read: {e.Message}", e);
        }
        return Preprocess(bytes, imagePath);
    }

    /// <summary>Preprocesses an encoded image (PNG, JPEG, WebP, GIF, BMP); <paramref name="nameForErrors"/> is named in errors.</summary>
    public PreprocessedImage Preprocess(byte[] encoded, string nameForErrors)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        nameForErrors ??= "image";
        var (rgb, w, h) = DecodeRgb(encoded, nameForErrors, MaxPixels);
        return PreprocessRgb(rgb, w, h, nameForErrors);
    }

    /// <summary>The CLIP steps (resize, center crop, rescale, normalize) on decoded RGB [h, w, 3], as <c>_preprocess</c> does
    /// them for each image (or, in LLaVA-NeXT, each tile).</summary>
    internal PreprocessedImage PreprocessRgb(byte[] rgb, int w, int h, string nameForErrors)
    {

        // Resize (HF get_resize_output_image_size with default_to_square=False, then PIL resize).
        int rw = w, rh = h;
        if (Config.DoResize)
        {
            if (Config.ShortestEdge is int s)
            {
                bool wideOrSquare = w >= h; // short = height
                int shortSide = wideOrSquare ? h : w, longSide = wideOrSquare ? w : h;
                int newLong = (int)((double)((long)s * longSide) / shortSide);
                (rw, rh) = wideOrSquare ? (newLong, s) : (s, newLong);
            }
            else
            {
                (rw, rh) = (Config.ResizeWidth!.Value, Config.ResizeHeight!.Value);
            }
            if (rw <= 0 || rh <= 0)
                throw new ProcessingException($"{nameForErrors}: a {w}x{h} image resizes to {rw}x{rh}: too thin");
        }
        var resized = (rw, rh) == (w, h) ? rgb : PilResample.Bicubic(rgb, w, h, 3, rw, rh);

        // Center crop (HF image_transforms.center_crop: floor division; zero padding, centred with ceil, when smaller).
        int cw = rw, ch = rh, left = 0, top = 0;
        if (Config.DoCenterCrop)
        {
            (cw, ch) = (Config.CropWidth, Config.CropHeight);
            left = FloorDiv(rw - cw, 2);
            top = FloorDiv(rh - ch, 2);
        }
        var cropped = new byte[ch * cw * 3];
        for (int y = 0; y < ch; y++)
        {
            int sy = y + top;
            if (sy < 0 || sy >= rh) continue;
            int x0 = Math.Max(0, -left), x1 = Math.Min(cw, rw - left);
            if (x1 <= x0) continue;
            Buffer.BlockCopy(resized, (sy * rw + x0 + left) * 3, cropped, (y * cw + x0) * 3, (x1 - x0) * 3);
        }

        // Rescale (float64 product cast to float32) and normalize (float32), channel-first.
        var pixels = new float[3 * ch * cw];
        int plane = ch * cw;
        for (int i = 0; i < plane; i++)
        {
            for (int c = 0; c < 3; c++)
            {
                byte b = cropped[i * 3 + c];
                float v = Config.DoRescale ? (float)(b * Config.RescaleFactor) : b;
                if (Config.DoNormalize) v = (v - _mean[c]) / _std[c];
                pixels[c * plane + i] = v;
            }
        }

        return new PreprocessedImage(pixels, new ImageGeometry(w, h, rw, rh, left, top, cw, ch), cropped);
    }

    /// <summary>
    /// The patches (row, col) of the model's grid that a box in original-image pixels covers after resize and crop:
    /// every patch whose square overlaps the box (a zero-width or zero-height box selects the patches its edge lies in).
    /// Row-major order; empty when the box lies outside the crop.
    /// </summary>
    public static IReadOnlyList<(int Row, int Col)> BoxToPatches(ImageGeometry g, double x0, double y0, double x1, double y1, int patchSize)
    {
        ArgumentNullException.ThrowIfNull(g);
        if (patchSize <= 0) throw new ArgumentOutOfRangeException(nameof(patchSize), patchSize, "must be positive");
        if (!double.IsFinite(x0) || !double.IsFinite(y0) || !double.IsFinite(x1) || !double.IsFinite(y1))
            throw new ArgumentException("box coordinates must be finite numbers");
        if (x1 < x0 || y1 < y0)
            throw new ArgumentException($"box ({x0}, {y0}, {x1}, {y1}) has x1 < x0 or y1 < y0");

        var (c0, c1) = Span(x0, x1, (double)g.ResizedWidth / g.OriginalWidth, g.CropLeft, g.CropWidth, patchSize);
        var (r0, r1) = Span(y0, y1, (double)g.ResizedHeight / g.OriginalHeight, g.CropTop, g.CropHeight, patchSize);
        var result = new List<(int, int)>();
        for (int r = r0; r <= r1; r++)
            for (int c = c0; c <= c1; c++)
                result.Add((r, c));
        return result;
    }

    /// <summary>First and last patch index along one axis; (0, -1) when none.</summary>
    private static (int First, int Last) Span(double a, double b, double scale, int cropStart, int cropSize, int patch)
    {
        int n = cropSize / patch;
        double lo = a * scale - cropStart, hi = b * scale - cropStart;
        double limit = n * patch;
        if (hi < 0 || lo > limit || n == 0) return (0, -1);
        if (hi == lo)
        {
            if (lo >= limit) return (0, -1);
            int i = (int)Math.Floor(lo / patch);
            return (i, i);
        }
        if (hi <= 0 || lo >= limit) return (0, -1); // touches the crop only at its border
        int first = Math.Max(0, (int)Math.Floor(lo / patch));
        int last = Math.Min(n - 1, (int)Math.Ceiling(hi / patch) - 1);
        return first <= last ? (first, last) : (0, -1);
    }

    private static int FloorDiv(int a, int b) => (int)Math.Floor((double)a / b);

    /// <summary>Decodes to [h, w, 3] RGB the way PIL's Image.open(...).convert("RGB") does (alpha dropped, no color management).</summary>
    internal static (byte[] Rgb, int Width, int Height) DecodeRgb(byte[] encoded, string name, long maxPixels)
    {
        if (encoded.Length == 0)
            throw new ProcessingException($"{name}: empty file, not an image");
        using var stream = new MemoryStream(encoded, writable: false);
        using var codec = SKCodec.Create(stream, out var createResult);
        if (codec == null)
            throw new ProcessingException(PngHeader.Problem(encoded, name) ?? (createResult == SKCodecResult.IncompleteInput
                ? $"{name}: image header is truncated"
                : $"{name}: not a recognised image (PNG, JPEG, WebP, GIF or BMP expected; the decoder says {createResult})"));

        var info = codec.Info;
        int w = info.Width, h = info.Height;
        if (w <= 0 || h <= 0)
            throw new ProcessingException($"{name}: image has no pixels ({w}x{h})");
        long pixels = (long)w * h;
        if (pixels > maxPixels)
            throw new ProcessingException(
                $"{name}: image is {w}x{h} = {pixels.ToString(CultureInfo.InvariantCulture)} pixels, more than the limit of {maxPixels.ToString(CultureInfo.InvariantCulture)} (decompression-bomb guard; raise MaxPixels to accept it)");
        if (pixels * 4 > Array.MaxLength)
            throw new ProcessingException($"{name}: image is {w}x{h}, too large to decode in memory");

        // Unpremultiplied RGBA, no color space: raw samples, as PIL gives them (ICC profiles and gamma are ignored).
        var dstInfo = new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[pixels * 4];
        var result = codec.GetPixels(dstInfo, rgba);
        if (result != SKCodecResult.Success)
            throw new ProcessingException(result == SKCodecResult.IncompleteInput
                ? $"{name}: image data is truncated (decoder: {result})"
                : $"{name}: image data is corrupt (decoder: {result})");

        var rgb = new byte[pixels * 3];
        for (long i = 0, j = 0; i < pixels; i++, j += 4)
        {
            rgb[i * 3] = rgba[j];
            rgb[i * 3 + 1] = rgba[j + 1];
            rgb[i * 3 + 2] = rgba[j + 2];
        }
        return (rgb, w, h);
    }

    private static void Validate(ClipImageProcessorConfig c, string name)
    {
        if (c.DoResize)
        {
            if (c.ShortestEdge is int s) { if (s <= 0) throw new ProcessingException($"{name}: size.shortest_edge must be positive, got {s}"); }
            else if (c.ResizeHeight is not int rh || c.ResizeWidth is not int rw || rh <= 0 || rw <= 0)
                throw new ProcessingException($"{name}: size needs a positive shortest_edge, or positive height and width");
        }
        if (c.DoCenterCrop && (c.CropHeight <= 0 || c.CropWidth <= 0))
            throw new ProcessingException($"{name}: crop_size must be positive, got {c.CropHeight}x{c.CropWidth}");
        if (c.DoRescale && !(double.IsFinite(c.RescaleFactor) && c.RescaleFactor > 0))
            throw new ProcessingException($"{name}: rescale_factor must be a positive number, got {c.RescaleFactor}");
        foreach (var (arr, field) in new[] { (c.ImageMean, "image_mean"), (c.ImageStd, "image_std") })
        {
            if (arr == null) continue;
            if (arr.Length != 3) throw new ProcessingException($"{name}: {field} must have 3 values (R, G, B), got {arr.Length}");
            if (arr.Any(v => !double.IsFinite(v))) throw new ProcessingException($"{name}: {field} has a non-finite value");
        }
        if (c.ImageStd != null && c.ImageStd.Any(v => v == 0))
            throw new ProcessingException($"{name}: image_std has a zero");
    }

    private static bool Bool(JsonElement r, string field, bool dflt, string name)
    {
        if (!r.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return dflt;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ProcessingException($"{name}: {field} must be true or false, got {v.GetRawText()}"),
        };
    }

    private static double[]? Triple(JsonElement r, string field, string name)
    {
        if (!r.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number) return [v.GetDouble(), v.GetDouble(), v.GetDouble()];
        if (v.ValueKind != JsonValueKind.Array)
            throw new ProcessingException($"{name}: {field} must be a list of 3 numbers");
        return v.EnumerateArray().Select(e => e.GetDouble()).ToArray();
    }
}
