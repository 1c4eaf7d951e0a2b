using System.Text.Json;

namespace LlavaMech.Processing;

/// <summary>
/// LLaVA-NeXT's ("anyres") plan for one image, computed once from its size (docs/METHOD_NEXT.md sections 1, 2, 6 and 7):
/// the chosen pinpoint, the tile grid, the aspect-kept resize and its zero padding, the feature grid and the part of it
/// that unpadding keeps, and so the number of image tokens. The processor cuts the pixels by it, the model packs the
/// features by it, and the prompt gets its <see cref="ImageTokens"/>.
/// </summary>
/// <param name="ImageWidth">w of the original image.</param>
/// <param name="ImageHeight">h of the original image.</param>
/// <param name="Tile">S, the tile side in pixels.</param>
/// <param name="PatchesPerTile">p = S / patch_size, patches per tile side.</param>
/// <param name="BestHeight">BH, the chosen pinpoint's height.</param>
/// <param name="BestWidth">BW, the chosen pinpoint's width.</param>
/// <param name="ResizedWidth">nw: the original resized, aspect kept, into the pinpoint.</param>
/// <param name="ResizedHeight">nh.</param>
/// <param name="PadTop">Rows of zeros above the resized image on the BW x BH canvas.</param>
/// <param name="PadLeft">Columns of zeros left of it.</param>
/// <param name="KeepRowStart">First feature-grid row unpadding keeps.</param>
/// <param name="KeptRows">R', feature rows kept.</param>
/// <param name="KeepColStart">First feature-grid column kept.</param>
/// <param name="KeptCols">C', feature columns kept (0 for an extreme aspect ratio: then only the newlines remain).</param>
public sealed record AnyresPlan(int ImageWidth, int ImageHeight, int Tile, int PatchesPerTile, int BestHeight, int BestWidth,
    int ResizedWidth, int ResizedHeight, int PadTop, int PadLeft, int KeepRowStart, int KeptRows, int KeepColStart, int KeptCols)
{
    /// <summary>GR, tile rows.</summary>
    public int TileRows => BestHeight / Tile;
    /// <summary>GC, tile columns.</summary>
    public int TileCols => BestWidth / Tile;
    /// <summary>1 + GR * GC: the base image and the high-resolution tiles.</summary>
    public int Tiles => 1 + TileRows * TileCols;
    /// <summary>R = GR * p, rows of the whole feature grid before unpadding.</summary>
    public int FeatureRows => TileRows * PatchesPerTile;
    /// <summary>C = GC * p.</summary>
    public int FeatureCols => TileCols * PatchesPerTile;
    /// <summary>p * p: the base tile's features (no newline).</summary>
    public int BaseTokens => PatchesPerTile * PatchesPerTile;
    /// <summary>R' * C': kept high-resolution features.</summary>
    public int GridTokens => KeptRows * KeptCols;
    /// <summary>R': one image_newline per kept row.</summary>
    public int NewlineTokens => KeptRows;
    /// <summary>N = p*p + R'*C' + R'.</summary>
    public int ImageTokens => BaseTokens + GridTokens + NewlineTokens;

    /// <summary>The plan of a <paramref name="width"/> x <paramref name="height"/> image.</summary>
    /// <param name="pinpoints">image_grid_pinpoints, (height, width) each, multiples of <paramref name="tile"/>.</param>
    public static AnyresPlan For(int width, int height, int tile, int patchSize, IReadOnlyList<(int Height, int Width)> pinpoints)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"image size {width}x{height} must be positive");
        if (tile <= 0 || patchSize <= 0 || tile % patchSize != 0)
            throw new ArgumentOutOfRangeException(nameof(tile), $"tile side {tile} must be a positive multiple of the patch size {patchSize}");
        if (pinpoints.Count == 0) throw new ArgumentException("no pinpoints", nameof(pinpoints));
        var (bh, bw) = SelectBestResolution(width, height, pinpoints);
        if (bh % tile != 0 || bw % tile != 0)
            throw new ArgumentException($"pinpoint [{bh}, {bw}] is not a multiple of the tile side {tile}", nameof(pinpoints));

        // get_patch_output_size: ceil here (select_best_resolution truncates).
        double sw = (double)bw / width, sh = (double)bh / height;
        int nw, nh;
        if (sw < sh) { nw = bw; nh = (int)Math.Min(Math.Ceiling(height * sw), bh); }
        else { nh = bh; nw = (int)Math.Min(Math.Ceiling(width * sh), bw); }
        int top = (bh - nh) / 2, left = (bw - nw) / 2;

        // _get_unpadded_features / unpad_image: on the feature grid, round(., 7) then truncation.
        int p = tile / patchSize;
        int rows = bh / tile * p, cols = bw / tile * p;
        int r0 = 0, keptR = rows, c0 = 0, keptC = cols;
        if ((double)width / height > (double)cols / rows)
        {
            int newH = (int)Math.Round(height * ((double)cols / width), 7, MidpointRounding.ToEven);
            int pad = (rows - newH) / 2;
            r0 = pad; keptR = rows - 2 * pad;
        }
        else
        {
            int newW = (int)Math.Round(width * ((double)rows / height), 7, MidpointRounding.ToEven);
            int pad = (cols - newW) / 2;
            c0 = pad; keptC = cols - 2 * pad;
        }
        return new AnyresPlan(width, height, tile, p, bh, bw, nw, nh, top, left, r0, Math.Max(0, keptR), c0, Math.Max(0, keptC));
    }

    /// <summary>select_best_resolution: the first pinpoint with the largest effective resolution (capped at the original
    /// area), ties broken by the least waste.</summary>
    public static (int Height, int Width) SelectBestResolution(int width, int height, IReadOnlyList<(int Height, int Width)> pinpoints)
    {
        (int, int) best = pinpoints[0];
        long maxEffective = -1, minWasted = long.MaxValue;
        long area = (long)width * height;
        foreach (var (ph, pw) in pinpoints)
        {
            double scale = Math.Min((double)pw / width, (double)ph / height);
            long dw = (long)(width * scale), dh = (long)(height * scale);
            long effective = Math.Min(dw * dh, area);
            long wasted = (long)ph * pw - effective;
            if (effective > maxEffective || (effective == maxEffective && wasted < minWasted))
            {
                maxEffective = effective; minWasted = wasted; best = (ph, pw);
            }
        }
        return best;
    }
}

/// <summary>
/// Hugging Face's LlavaNextImageProcessor (slow, PIL) re-implemented to give the same <c>pixel_values</c>
/// (docs/METHOD_NEXT.md sections 1 to 4): the best pinpoint, the aspect-kept PIL bicubic resize of the original, zero
/// padding into the pinpoint, S x S tiles row-major, the original squashed to S x S as the base tile first; then each tile
/// through the CLIP steps of <see cref="ClipImageProcessor"/>. <see cref="PreprocessedImage.PixelValues"/> is
/// [1 + GR*GC, 3, S, S]; its geometry and crop describe the base tile (the whole image squashed), the one every overlay
/// of a square grid draws on; <see cref="NextImage.Plan"/> the rest.
/// </summary>
public sealed class AnyresImageProcessor : IImageProcessor
{
    public AnyresImageProcessor(ClipImageProcessor clip, IReadOnlyList<(int Height, int Width)> pinpoints, int patchSize, string source)
    {
        ArgumentNullException.ThrowIfNull(clip);
        Clip = clip;
        var c = clip.Config;
        Tile = c.CropHeight;
        if (c.CropHeight != c.CropWidth || (c.DoResize && c.ShortestEdge is int se && se != c.CropHeight))
            throw new ProcessingException($"{source}: a LLaVA-NeXT tile is square: crop_size {c.CropHeight}x{c.CropWidth} and size.shortest_edge {c.ShortestEdge} must be one side");
        if (patchSize <= 0 || Tile % patchSize != 0)
            throw new ProcessingException($"{source}: the tile side {Tile} (crop_size) is not a multiple of patch_size {patchSize}");
        for (int k = 0; k < pinpoints.Count; k++)
            if (pinpoints[k].Height <= 0 || pinpoints[k].Width <= 0 || pinpoints[k].Height % Tile != 0 || pinpoints[k].Width % Tile != 0)
                throw new ProcessingException($"{source}: image_grid_pinpoints[{k}] = [{pinpoints[k].Height}, {pinpoints[k].Width}] is not a multiple of the tile side crop_size = {Tile}");
        if (pinpoints.Count == 0) throw new ProcessingException($"{source}: image_grid_pinpoints is empty");
        Pinpoints = pinpoints.ToArray();
        PatchSize = patchSize;
    }

    public ClipImageProcessor Clip { get; }
    public int Tile { get; }
    public int PatchSize { get; }
    public IReadOnlyList<(int Height, int Width)> Pinpoints { get; }

    /// <summary>The same processor with another pixel limit (<see cref="ClipImageProcessor.MaxPixels"/>).</summary>
    public AnyresImageProcessor WithMaxPixels(long maxPixels) => new(Clip.WithMaxPixels(maxPixels), Pinpoints, PatchSize, "processor");

    /// <summary>
    /// Reads <c>preprocessor_config.json</c> (the CLIP settings and its image_grid_pinpoints) of a model folder and checks
    /// that its pinpoints equal <paramref name="configPinpoints"/> (config.json's: the model packs by those, the processor
    /// tiles by these).
    /// </summary>
    public static AnyresImageProcessor FromDirectory(string modelDir, IReadOnlyList<(int Height, int Width)> configPinpoints, int patchSize)
    {
        var clip = ClipImageProcessor.FromDirectory(modelDir);
        var path = Path.Combine(modelDir, "preprocessor_config.json");
        var pinpoints = ReadPinpoints(File.ReadAllBytes(path), path) ?? configPinpoints;
        if (!pinpoints.SequenceEqual(configPinpoints))
            throw new ProcessingException(
                $"{path}: image_grid_pinpoints {Show(pinpoints)} disagree with config.json's image_grid_pinpoints {Show(configPinpoints)}: " +
                "the processor would tile by one and the model pack by the other");
        return new AnyresImageProcessor(clip, pinpoints, patchSize, path);
    }

    private static string Show(IEnumerable<(int Height, int Width)> p) => "[" + string.Join(", ", p.Select(x => $"[{x.Height}, {x.Width}]")) + "]";

    /// <summary>image_grid_pinpoints of a preprocessor_config.json, or null when it has none.</summary>
    internal static IReadOnlyList<(int Height, int Width)>? ReadPinpoints(byte[] json, string name)
    {
        using var doc = JsonDocument.Parse(json);
        if (!doc.RootElement.TryGetProperty("image_grid_pinpoints", out var el) || el.ValueKind == JsonValueKind.Null) return null;
        if (el.ValueKind != JsonValueKind.Array || el.GetArrayLength() == 0)
            throw new ProcessingException($"{name}: image_grid_pinpoints must be a non-empty list of [height, width] pairs");
        var r = new List<(int, int)>();
        int k = 0;
        foreach (var pair in el.EnumerateArray())
        {
            if (pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2 || pair[0].ValueKind != JsonValueKind.Number
                || pair[1].ValueKind != JsonValueKind.Number || !pair[0].TryGetInt32(out int h) || !pair[1].TryGetInt32(out int w))
                throw new ProcessingException($"{name}: image_grid_pinpoints[{k}] must be a [height, width] pair of integers, found {pair.GetRawText()}");
            r.Add((h, w));
            k++;
        }
        return r;
    }

    /// <summary>The plan of an image of this size (no pixels read).</summary>
    public AnyresPlan Plan(int width, int height) => AnyresPlan.For(width, height, Tile, PatchSize, Pinpoints);

    public long MaxPixels => Clip.MaxPixels;

    /// <summary>Reads and preprocesses an image file: [1 + GR*GC, 3, S, S] pixels with the plan.</summary>
    public PreprocessedImage Preprocess(string imagePath) => PreprocessNext(imagePath).Image;

    /// <summary>Reads and preprocesses an image file, keeping the padded canvas.</summary>
    public NextImage PreprocessNext(string imagePath)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        if (!File.Exists(imagePath)) throw new ProcessingException($"{imagePath}: image file not found");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(imagePath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ProcessingException($"{imagePath}: cannot read: {e.Message}", e);
        }
        return PreprocessNext(bytes, imagePath);
    }

    /// <summary>Preprocesses an encoded image; <paramref name="nameForErrors"/> is named in errors.</summary>
    public NextImage PreprocessNext(byte[] encoded, string nameForErrors)
    {
        var (rgb, w, h) = ClipImageProcessor.DecodeRgb(encoded, nameForErrors, Clip.MaxPixels);
        var plan = Plan(w, h);
        int S = Tile, bw = plan.BestWidth, bh = plan.BestHeight;

        // The canvas: the original resized (aspect kept) and centred on zeros.
        var resized = PilResample.Bicubic(rgb, w, h, 3, plan.ResizedWidth, plan.ResizedHeight);
        var canvas = new byte[(long)bw * bh * 3];
        for (int y = 0; y < plan.ResizedHeight; y++)
            Buffer.BlockCopy(resized, y * plan.ResizedWidth * 3, canvas, ((plan.PadTop + y) * bw + plan.PadLeft) * 3, plan.ResizedWidth * 3);

        // The base: the original squashed to S x S; it comes first.
        var baseRgb = PilResample.Bicubic(rgb, w, h, 3, S, S);
        var first = Clip.PreprocessRgb(baseRgb, S, S, nameForErrors);
        int tileFloats = 3 * S * S;
        var pixels = new float[(long)plan.Tiles * tileFloats];
        Array.Copy(first.PixelValues, 0, pixels, 0, tileFloats);
        var tile = new byte[S * S * 3];
        for (int r = 0, k = 1; r < plan.TileRows; r++)
            for (int c = 0; c < plan.TileCols; c++, k++)
            {
                for (int y = 0; y < S; y++)
                    Buffer.BlockCopy(canvas, ((r * S + y) * bw + c * S) * 3, tile, y * S * 3, S * 3);
                var t = Clip.PreprocessRgb(tile, S, S, nameForErrors);
                Array.Copy(t.PixelValues, 0, pixels, (long)k * tileFloats, tileFloats);
            }
        var image = new PreprocessedImage(pixels, new ImageGeometry(w, h, S, S, 0, 0, S, S), first.CroppedRgb) { Tiles = plan.Tiles, Anyres = plan };
        return new NextImage(image, plan, canvas);
    }
}

/// <summary>A preprocessed LLaVA-NeXT image: the tensor data, its plan, and the padded canvas (bw x bh RGB) the tiles were cut from.</summary>
public sealed record NextImage(PreprocessedImage Image, AnyresPlan Plan, byte[] CanvasRgb);
