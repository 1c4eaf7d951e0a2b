using System.Text.Json;
using LlavaMech.Datasets;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Training;

/// <summary>Examples of one token length (the model takes no padding, so a batch comes from one bucket).</summary>
internal sealed class Bucket(int length, bool hasImage)
{
    public int Length { get; } = length;
    public bool HasImage { get; } = hasImage;
    public List<long[]> Ids { get; } = [];
    public List<long> Targets { get; } = [];
    /// <summary>Row of the example's image in <see cref="TrainingData.Rgb"/> (VQA only).</summary>
    public List<int> Images { get; } = [];
    public int Count => Ids.Count;

    private int[] _order = [];
    private int _cursor;

    /// <summary>The next <paramref name="n"/> examples of a shuffled pass (reshuffled when a pass ends).</summary>
    public int[] Take(int n, Random rng)
    {
        var picked = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (_cursor >= _order.Length)
            {
                _order = Enumerable.Range(0, Count).ToArray();
                rng.Shuffle(_order);
                _cursor = 0;
            }
            picked[i] = _order[_cursor++];
        }
        return picked;
    }
}

/// <summary>
/// Training examples encoded exactly as <c>LoadedModel.Prepare</c> encodes them (same tokenizer, prompt
/// encoder and image processor, read from the model folder), with the answer's token id as target.
/// Images are kept as the processor's uint8 crops and normalised per batch (a float copy of thousands
/// of images would take gigabytes).
/// </summary>
internal sealed class TrainingData
{
    public List<Bucket> Vqa { get; } = [];
    public List<Bucket> Tqa { get; } = [];
    public int VqaCount => Vqa.Sum(b => b.Count);
    public int TqaCount => Tqa.Sum(b => b.Count);

    /// <summary>[N, H, W, 3] crops, row-major.</summary>
    public byte[] Rgb { get; private set; } = [];
    public int ImageHeight { get; private set; }
    public int ImageWidth { get; private set; }
    /// <summary>[3 * 256]: the normalised value of byte b in channel c at c * 256 + b, computed as the processor computes it.</summary>
    public float[] Lut { get; private set; } = [];

    /// <summary>
    /// Per image and patch (row-major over the grid), the object covering the patch: its shape and
    /// colour class (1-based indices into <see cref="PatchShapes"/> / <see cref="PatchColors"/>, 0 for
    /// background), or null when the examples carry no object metadata. Used by the optional
    /// patch loss (<see cref="ToyTrainingOptions.PatchLossWeight"/>).
    /// </summary>
    public byte[]? PatchShape { get; private set; }
    public byte[]? PatchColor { get; private set; }
    public int PatchGrid { get; private set; }
    public int PatchSize { get; private set; } = 14;

    /// <summary>[N * 3]: each image's background colour (its most frequent pixel colour).</summary>
    public byte[] Background { get; private set; } = [];

    public static IReadOnlyList<string> PatchShapes => SynthPalette.Shapes;
    public static IReadOnlyList<string> PatchColors { get; } = SynthPalette.Colors.Select(c => c.Name).ToArray();

    /// <summary>Fewest pixels of an object in a patch for the patch to be labelled with it.</summary>
    public const int MinPatchPixels = 12;

    /// <summary>The id of the answer word as the next token after "... is" (e.g. "▁red").</summary>
    public static long AnswerTokenId(ITextTokenizer tokenizer, string word)
    {
        if (tokenizer.TokenToId("\u2581" + word) is int id) return id;
        var ids = tokenizer.Encode(word);
        if (ids.Length == 1) return ids[0];
        throw new ArgumentException($"answer '{word}' is not a single token ({ids.Length} pieces) in this tokenizer");
    }

    public static TrainingData Encode(IReadOnlyList<ManifestExample> examples, ITextTokenizer tokenizer, PromptEncoder prompts,
        ClipImageProcessor images, Action<int, int>? progress = null, int patchSize = 14, bool allObjectQuestions = false)
    {
        var data = new TrainingData { PatchSize = patchSize };
        var background = new List<byte>();
        var vqa = examples.Where(e => e.IsVqa).ToList();
        var rgb = new List<byte[]>(vqa.Count);
        var shapeLabels = new List<byte[]?>(vqa.Count);
        var colorLabels = new List<byte[]?>(vqa.Count);
        var buckets = new Dictionary<(int, bool), Bucket>();
        int done = 0;
        void Add(long[] ids, bool hasImage, long target, int image)
        {
            var key = (ids.Length, hasImage);
            if (!buckets.TryGetValue(key, out var b))
            {
                buckets[key] = b = new Bucket(ids.Length, hasImage);
                (hasImage ? data.Vqa : data.Tqa).Add(b);
            }
            b.Ids.Add(ids);
            b.Targets.Add(target);
            if (hasImage) b.Images.Add(image);
        }

        foreach (var e in examples)
        {
            if (e.Expected is null) throw new ArgumentException($"training example '{e.Id}' has no expected answer");
            bool hasImage = e.IsVqa;
            var enc = prompts.Encode(e.Prompt, hasImage);
            int image = -1;
            if (hasImage)
            {
                var img = images.Preprocess(e.ImagePath!);
                if (data.ImageHeight == 0)
                {
                    data.ImageHeight = img.Geometry.CropHeight;
                    data.ImageWidth = img.Geometry.CropWidth;
                }
                else if (img.Geometry.CropHeight != data.ImageHeight || img.Geometry.CropWidth != data.ImageWidth)
                    throw new InvalidOperationException($"image of '{e.Id}' has another crop size");
                image = rgb.Count;
                rgb.Add(img.CroppedRgb);
                background.AddRange(MostFrequentColor(img.CroppedRgb));
                var (sl, cl) = PatchLabels(e, img, patchSize);
                shapeLabels.Add(sl);
                colorLabels.Add(cl);
            }
            Add(enc.InputIds, hasImage, AnswerTokenId(tokenizer, e.Expected), image);
            if (hasImage && allObjectQuestions)
                foreach (var (shape, color) in OtherQuestions(e))
                    Add(prompts.Encode(SynthColors.VqaPrompt(shape), true).InputIds, true, AnswerTokenId(tokenizer, color), image);
            if (++done % 200 == 0) progress?.Invoke(done, examples.Count);
        }
        progress?.Invoke(done, examples.Count);

        data.Rgb = new byte[rgb.Sum(r => r.Length)];
        int at = 0;
        foreach (var r in rgb)
        {
            r.CopyTo(data.Rgb, at);
            at += r.Length;
        }
        data.Background = background.ToArray();
        if (rgb.Count > 0 && shapeLabels.All(l => l is not null))
        {
            data.PatchGrid = data.ImageHeight / patchSize;
            data.PatchShape = shapeLabels.SelectMany(l => l!).ToArray();
            data.PatchColor = colorLabels.SelectMany(l => l!).ToArray();
        }

        // Same arithmetic as ClipImageProcessor: float32(b * rescale), then (v - mean) / std in float32.
        var c = images.Config;
        var mean = (c.ImageMean ?? ClipImageProcessorConfig.ClipMean).Select(v => (float)v).ToArray();
        var std = (c.ImageStd ?? ClipImageProcessorConfig.ClipStd).Select(v => (float)v).ToArray();
        data.Lut = new float[3 * 256];
        for (int ch = 0; ch < 3; ch++)
        for (int b = 0; b < 256; b++)
        {
            float v = c.DoRescale ? (float)(b * c.RescaleFactor) : b;
            if (c.DoNormalize) v = (v - mean[ch]) / std[ch];
            data.Lut[ch * 256 + b] = v;
        }
        return data;
    }

    /// <summary>
    /// Shape and colour class of every patch, from the example's object list (metadata <c>objects</c>
    /// of SynthColors): a pixel belongs to an object when it lies in the object's box and has its
    /// colour (the shade it was drawn in, within 3 steps per channel; boxes do not overlap). Null when the
    /// example has no such metadata or the crop is not the original image.
    /// </summary>
    internal static (byte[]? Shape, byte[]? Color) PatchLabels(ManifestExample e, PreprocessedImage img, int patch)
    {
        // Scenes drawn larger and scaled down keep their interiors within a few steps of the shade.
        const int Tolerance = 3;
        var g = img.Geometry;
        if (g.OriginalWidth != g.CropWidth || g.OriginalHeight != g.CropHeight || g.CropLeft != 0 || g.CropTop != 0
            || g.CropWidth % patch != 0 || g.CropHeight != g.CropWidth)
            return (null, null);
        List<(int Shape, int Color, byte R, byte G, byte B, int[] Box)> objects = [];
        try
        {
            using var doc = JsonDocument.Parse(e.MetadataJson);
            if (!doc.RootElement.TryGetProperty("objects", out var list) || list.ValueKind != JsonValueKind.Array) return (null, null);
            foreach (var o in list.EnumerateArray())
            {
                int shape = IndexOf(PatchShapes, o.GetProperty("shape").GetString());
                int color = IndexOf(PatchColors, o.GetProperty("color").GetString());
                if (shape < 0 || color < 0) return (null, null);
                var named = SynthPalette.Colors[color];
                var box = o.GetProperty("box").EnumerateArray().Select(v => (int)Math.Round(v.GetDouble())).ToArray();
                // Varied scenes name the shade each object was drawn in.
                var rgb = o.TryGetProperty("rgb", out var drawn) ? drawn.EnumerateArray().Select(v => (byte)v.GetInt32()).ToArray() : [named.R, named.G, named.B];
                objects.Add((shape + 1, color + 1, rgb[0], rgb[1], rgb[2], box));
            }
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return (null, null);
        }

        int grid = g.CropWidth / patch, w = g.CropWidth;
        var shapes = new byte[grid * grid];
        var colors = new byte[grid * grid];
        var counts = new int[objects.Count];
        for (int pr = 0; pr < grid; pr++)
        for (int pc = 0; pc < grid; pc++)
        {
            Array.Clear(counts);
            for (int y = pr * patch; y < (pr + 1) * patch; y++)
            for (int x = pc * patch; x < (pc + 1) * patch; x++)
            {
                int at = (y * w + x) * 3;
                for (int k = 0; k < objects.Count; k++)
                {
                    var ob = objects[k];
                    if (x >= ob.Box[0] && x < ob.Box[2] && y >= ob.Box[1] && y < ob.Box[3]
                        && Math.Abs(img.CroppedRgb[at] - ob.R) <= Tolerance && Math.Abs(img.CroppedRgb[at + 1] - ob.G) <= Tolerance
                        && Math.Abs(img.CroppedRgb[at + 2] - ob.B) <= Tolerance)
                        counts[k]++;
                }
            }
            int best = -1;
            for (int k = 0; k < counts.Length; k++)
                if (counts[k] >= MinPatchPixels && (best < 0 || counts[k] > counts[best])) best = k;
            if (best >= 0)
            {
                shapes[pr * grid + pc] = (byte)objects[best].Shape;
                colors[pr * grid + pc] = (byte)objects[best].Color;
            }
        }
        return (shapes, colors);
    }

    /// <summary>
    /// Further questions the image answers: every other object (metadata <c>objects</c>) whose shape
    /// is a question shape and unique in the image, with its colour.
    /// </summary>
    internal static IReadOnlyList<(string Shape, string Color)> OtherQuestions(ManifestExample e)
    {
        List<(string Shape, string Color)> objects = [];
        string? asked;
        try
        {
            using var doc = JsonDocument.Parse(e.MetadataJson);
            if (!doc.RootElement.TryGetProperty("objects", out var list) || list.ValueKind != JsonValueKind.Array) return [];
            asked = doc.RootElement.TryGetProperty("shape", out var s) ? s.GetString() : null;
            foreach (var o in list.EnumerateArray())
                objects.Add((o.GetProperty("shape").GetString()!, o.GetProperty("color").GetString()!));
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return [];
        }
        return objects.Where(o => o.Shape != asked && SynthPalette.SingleTokenShapes.Contains(o.Shape)
                                  && objects.Count(x => x.Shape == o.Shape) == 1).ToList();
    }

    private static byte[] MostFrequentColor(byte[] rgb)
    {
        var counts = new Dictionary<int, int>();
        for (int i = 0; i + 2 < rgb.Length; i += 3)
        {
            int key = rgb[i] << 16 | rgb[i + 1] << 8 | rgb[i + 2];
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }
        int best = counts.MaxBy(kv => kv.Value).Key;
        return [(byte)(best >> 16), (byte)(best >> 8), (byte)best];
    }

    private static int IndexOf(IReadOnlyList<string> list, string? name)
    {
        for (int i = 0; i < list.Count; i++) if (list[i] == name) return i;
        return -1;
    }

    /// <summary>Picks a bucket with probability proportional to its size.</summary>
    public static Bucket PickBucket(List<Bucket> buckets, Random rng)
    {
        int total = buckets.Sum(b => b.Count);
        int r = rng.Next(total);
        foreach (var b in buckets)
        {
            if (r < b.Count) return b;
            r -= b.Count;
        }
        return buckets[^1];
    }

    /// <summary>One batch: input ids [B, T], pixels [B, 3, H, W] (or null), targets [B], and the patch labels [B, P] (or null).</summary>
    /// <param name="ObjectPixels">[B, P, patch * patch]: 1 where a pixel differs from the image's background colour.</param>
    public sealed record Batch(Tensor Ids, Tensor? Pixels, Tensor Targets, Tensor? PatchShape, Tensor? PatchColor, Tensor? ObjectPixels);

    /// <summary>The chosen examples of a bucket, images mirrored left-right at random when <paramref name="flip"/>.</summary>
    public Batch MakeBatch(Bucket b, int[] rows, Tensor? rgb, bool flip, Random rng, Device device)
    {
        var ids = new long[rows.Length * b.Length];
        var targets = new long[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            b.Ids[rows[i]].CopyTo(ids, i * b.Length);
            targets[i] = b.Targets[rows[i]];
        }
        Tensor? pixels = null, shape = null, color = null, objectPixels = null;
        if (b.HasImage)
        {
            long n = rows.Length;
            var imageRows = rows.Select(r => (long)b.Images[r]).ToArray();
            var picked = rgb!.index_select(0, tensor(imageRows)).to(ScalarType.Int64);                  // [B, H, W, 3]
            Tensor? mask = null;
            if (flip)
            {
                mask = tensor(rows.Select(_ => rng.Next(2) == 1).ToArray());
                picked = where(mask.view(-1, 1, 1, 1), picked.flip(2), picked);
            }
            var channel = arange(3, dtype: ScalarType.Int64).mul(256).view(1, 1, 1, 3);
            var x = tensor(Lut).index_select(0, (picked + channel).flatten()).view(picked.shape).permute(0, 3, 1, 2); // [B, 3, H, W]
            pixels = x.contiguous().to(device);
            if (Background.Length > 0 && ImageHeight % PatchSize == 0)
            {
                // Pixels unlike the background, per patch: [B, P, patch*patch].
                var bg = tensor(imageRows.SelectMany(r => Background.AsSpan((int)r * 3, 3).ToArray().Select(v => (long)v)).ToArray(), [n, 1, 1, 3]);
                int g = ImageHeight / PatchSize;
                objectPixels = picked.ne(bg).any(-1).to(ScalarType.Float32)
                    .view(n, g, PatchSize, g, PatchSize).permute(0, 1, 3, 2, 4).reshape(n, g * g, PatchSize * PatchSize).to(device);
            }
            if (PatchShape is not null)
            {
                int p = PatchGrid * PatchGrid;
                var s = new long[n * p];
                var c = new long[n * p];
                for (int i = 0; i < n; i++)
                for (int j = 0; j < p; j++)
                {
                    s[i * p + j] = PatchShape[imageRows[i] * p + j];
                    c[i * p + j] = PatchColor![imageRows[i] * p + j];
                }
                shape = tensor(s, [n, PatchGrid, PatchGrid]);
                color = tensor(c, [n, PatchGrid, PatchGrid]);
                if (mask is not null)
                {
                    shape = where(mask.view(-1, 1, 1), shape.flip(2), shape);
                    color = where(mask.view(-1, 1, 1), color.flip(2), color);
                }
                shape = shape.view(n, p).to(device);
                color = color.view(n, p).to(device);
            }
        }
        return new Batch(tensor(ids, [rows.Length, b.Length], device: device), pixels, tensor(targets, device: device), shape, color, objectPixels);
    }

    /// <summary>All crops as one uint8 tensor [N, H, W, 3].</summary>
    public Tensor RgbTensor() => tensor(Rgb, [Rgb.Length / (ImageHeight * ImageWidth * 3L), ImageHeight, ImageWidth, 3], dtype: ScalarType.Byte);
}
