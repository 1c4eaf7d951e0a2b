using System.Text.Json.Nodes;
using LlavaMech.Datasets.Manifest;
using SkiaSharp;

namespace LlavaMech.Datasets;

/// <param name="ManifestPath">Absolute path of the manifest written.</param>
/// <param name="Examples">The examples in manifest order (Line = line in that manifest).</param>
public sealed record SynthResult(string ManifestPath, IReadOnlyList<ManifestExample> Examples);

/// <summary>
/// One drawn object: <paramref name="Box"/> is [x0, y0, x1, y1) in pixels; <paramref name="Rgb"/> the shade drawn (the
/// palette's value of <paramref name="Color"/> unless the scene varies); a triangle's apex is shifted by
/// <paramref name="Apex"/> of its width and its height is <paramref name="Height"/> of its slot.
/// </summary>
internal sealed record SynthObject(string Shape, string Color, int[] Box, byte[] Rgb, float Apex = 0, float Height = 1);

/// <summary>
/// Synthetic colour world: flat shapes in named colours on light or dark backgrounds, and a
/// question about the colour of the one object whose shape is unique in the image. Labels are
/// exact by construction, which is what the attribution statistics need for a toy model.
/// Deterministic for a seed (own PRNG, no anti-aliasing), and example i does not depend on the count.
/// </summary>
public static class SynthColors
{
    public const string ManifestFileName = "manifest.jsonl";
    public const string TextQaFileName = "tqa.jsonl";
    public const string ImagesFolder = "images";

    private const ulong StreamScene = 1, StreamColorRound = 2, StreamShapeRound = 3, StreamTqaColorRound = 4, StreamTqaObjects = 5;

    public static string VqaPrompt(string shape) =>
        $"USER: <image>\nWhat is the color of the {shape}?\nASSISTANT: The color of the {shape} is";

    public static string TqaPrompt(string obj) =>
        $"USER: What is the color of the {obj}?\nASSISTANT: The color of the {obj} is";

    /// <summary>
    /// Writes <paramref name="count"/> PNGs to outDir/images and outDir/manifest.jsonl holding the
    /// <paramref name="count"/> VQA examples followed by the TQA examples
    /// (<see cref="SynthOptions.TextQaCount"/>, by default as many; the same ones
    /// <see cref="GenerateTextQa"/> writes for this seed). Other files in outDir are left alone.
    /// </summary>
    public static SynthResult Generate(string outDir, int count, int seed, SynthOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var o = options ?? new SynthOptions();
        var cfg = Config.From(o);

        string dir = Path.GetFullPath(outDir);
        string imagesDir = Path.Combine(dir, ImagesFolder);
        Directory.CreateDirectory(imagesDir);

        var examples = new List<ManifestExample>();
        for (int i = 0; i < count; i++)
        {
            var (scene, png) = Render(BuildScene(cfg, seed, i), o.ImageSize);
            string id = $"{o.IdPrefix}-{i:D5}";
            string rel = $"{ImagesFolder}/{id}.png";
            string abs = Path.Combine(imagesDir, id + ".png");
            File.WriteAllBytes(abs, png);

            var target = scene.Objects[0];
            var meta = new JsonObject
            {
                ["shape"] = target.Shape,
                ["num_objects"] = scene.Objects.Count,
                ["background"] = scene.BackgroundKind,
                ["background_rgb"] = new JsonArray(scene.Background.R, scene.Background.G, scene.Background.B),
                // objects[0] is the one asked about; the rest are distractors.
                ["objects"] = new JsonArray(scene.Objects.Select(ob => (JsonNode)new JsonObject
                {
                    ["shape"] = ob.Shape,
                    ["color"] = ob.Color,
                    ["box"] = new JsonArray(ob.Box.Select(v => (JsonNode)v).ToArray()),
                }).ToArray()),
            };
            if (o.Variation is not null)
            {
                // The shade each object was drawn in (patch labels match it) and how the scene was drawn.
                var objs = meta["objects"]!.AsArray();
                for (int k = 0; k < scene.Objects.Count; k++) objs[k]!["rgb"] = new JsonArray(scene.Objects[k].Rgb.Select(v => (JsonNode)(int)v).ToArray());
                meta["antialias"] = scene.Antialias;
                meta["downscaled"] = scene.Downscaled;
            }
            examples.Add(new ManifestExample(id, ManifestTasks.Vqa, abs, rel, VqaPrompt(target.Shape), target.Color,
                target.Box.Select(v => (double)v).ToArray(), meta.ToJsonString(), examples.Count + 1));
        }

        foreach (var t in TextQaExamples(o.TextQaCount ?? count, seed, o.TextQaIdPrefix))
            examples.Add(t with { Line = examples.Count + 1 });

        string manifest = Path.Combine(dir, ManifestFileName);
        ManifestWriter.Write(manifest, examples);
        return new SynthResult(manifest, examples);
    }

    /// <summary>
    /// Writes outDir/tqa.jsonl: a text-only manifest of <paramref name="count"/> questions about
    /// everyday objects (<see cref="SynthPalette.TextQaObjects"/>). These are the same examples
    /// <see cref="Generate"/> appends to manifest.jsonl for the same seed.
    /// </summary>
    public static SynthResult GenerateTextQa(string outDir, int count, int seed)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var examples = TextQaExamples(count, seed, new SynthOptions().TextQaIdPrefix);
        string manifest = Path.Combine(Path.GetFullPath(outDir), TextQaFileName);
        ManifestWriter.Write(manifest, examples);
        return new SynthResult(manifest, examples);
    }

    /// <summary>
    /// TQA examples without writing anything. Colours come in shuffled rounds (balanced labels);
    /// within a colour the objects are dealt in shuffled rounds too.
    /// </summary>
    public static IReadOnlyList<ManifestExample> TextQaExamples(int count, int seed, string idPrefix = "tqa")
    {
        var colors = SynthPalette.TextQaObjects.Select(t => t.Color).Distinct().ToArray();
        var used = new Dictionary<string, int>();
        var result = new List<ManifestExample>(count);
        for (int i = 0; i < count; i++)
        {
            string color = RoundRobin(colors, seed, StreamTqaColorRound, i);
            var objects = SynthPalette.TextQaObjects.Where(t => t.Color == color).ToArray();
            int k = used.GetValueOrDefault(color);
            used[color] = k + 1;
            // Deal per colour in shuffled rounds keyed by (colour index, round) so it is prefix-stable.
            var rng = DeterministicRandom.For(seed, StreamTqaObjects, (Array.IndexOf(colors, color) << 20) + k / objects.Length);
            var order = objects.ToList();
            rng.Shuffle(order);
            var obj = order[k % objects.Length];
            var meta = new JsonObject { ["object"] = obj.Name };
            result.Add(new ManifestExample($"{idPrefix}-{i:D5}", ManifestTasks.Tqa, null, null, TqaPrompt(obj.Name),
                obj.Color, null, meta.ToJsonString(), i + 1));
        }
        return result;
    }

    /// <summary>Item i of a sequence made of shuffled rounds over <paramref name="items"/>.</summary>
    private static T RoundRobin<T>(IReadOnlyList<T> items, int seed, ulong stream, int i)
    {
        var order = items.ToList();
        DeterministicRandom.For(seed, stream, i / items.Count).Shuffle(order);
        return order[i % items.Count];
    }

    /// <summary>Objects[0] is the one asked about; Slots[k] is the square Objects[k] was drawn in.</summary>
    /// <param name="Background2">the second colour of a textured background (stripes, gradient; noise amplitude from it).</param>
    internal sealed record Scene(string BackgroundKind, NamedColor Background, IReadOnlyList<SynthObject> Objects, IReadOnlyList<int[]> Slots,
        NamedColor? Background2 = null, bool Antialias = false, bool Downscaled = false, ulong TextureSeed = 0);

    private sealed record Config(
        SynthOptions O, NamedColor[] Colors, string[] Shapes, string[] QuestionShapes, int MinSize, int MaxSize)
    {
        public static Config From(SynthOptions o)
        {
            var colors = (o.Colors ?? SynthPalette.Colors.Select(c => c.Name).ToArray()).Select(SynthPalette.Color).ToArray();
            var shapes = (o.Shapes ?? SynthPalette.Shapes).ToArray();
            var questionShapes = (o.QuestionShapes ?? SynthPalette.SingleTokenShapes).ToArray();
            foreach (var s in shapes.Concat(questionShapes))
                if (!SynthPalette.Shapes.Contains(s))
                    throw new ArgumentException($"Unknown shape '{s}'. Known: {string.Join(", ", SynthPalette.Shapes)}.");
            if (colors.Length == 0 || questionShapes.Length == 0)
                throw new ArgumentException("SynthOptions needs at least one colour and one question shape.");
            if (colors.Select(c => c.Name).Distinct().Count() != colors.Length || questionShapes.Distinct().Count() != questionShapes.Length)
                throw new ArgumentException("SynthOptions colours and question shapes must not repeat.");
            int min = o.ResolvedMinSize, max = o.ResolvedMaxSize;
            if (o.Variation is { } v)
                (min, max) = ((int)Math.Round(v.MinObjectShare * o.ImageSize), (int)Math.Round(v.MaxObjectShare * o.ImageSize));
            if (o.ImageSize < 8 || min < 4 || min > max || max > o.ImageSize)
                throw new ArgumentException(
                    $"SynthOptions: need 4 <= MinObjectSize ({min}) <= MaxObjectSize ({max}) <= ImageSize ({o.ImageSize}).");
            if (o.MinObjects < 1 || o.MaxObjects < o.MinObjects)
                throw new ArgumentException($"SynthOptions: need 1 <= MinObjects ({o.MinObjects}) <= MaxObjects ({o.MaxObjects}).");
            if (o.MinGap < 0)
                throw new ArgumentException("SynthOptions.MinGap must be >= 0.");
            return new Config(o, colors, shapes, questionShapes, min, max);
        }
    }

    private static Scene BuildScene(Config cfg, int seed, int index)
    {
        var o = cfg.O;
        var v = o.Variation;
        var rng = DeterministicRandom.For(seed, StreamScene, index);
        // Balanced answers: the asked colour and shape come from shuffled rounds over all of them.
        var targetColor = RoundRobin(cfg.Colors, seed, StreamColorRound, index);
        var targetShape = RoundRobin(cfg.QuestionShapes, seed, StreamShapeRound, index);

        var (kind, bg) = v is null ? PickBackground(rng, targetColor, o.MinContrast) : PickVariedBackground(rng, targetColor, v);
        double contrast = v?.MinContrast ?? o.MinContrast;
        int wanted = rng.NextInclusive(o.MinObjects, o.MaxObjects);

        var objects = new List<SynthObject>();
        var slots = new List<int[]>();
        var distractorShapes = cfg.Shapes.Where(s => s != targetShape).ToArray();
        var freeColors = cfg.Colors.Where(c => c.Name != targetColor.Name && c.DistanceTo(bg.R, bg.G, bg.B) >= contrast).ToList();

        for (int k = 0; k < wanted; k++)
        {
            string shape;
            NamedColor color;
            if (k == 0)
                (shape, color) = (targetShape, targetColor);
            else if (v is not null && rng.NextDouble() < v.TwinDistractorShare)
                (shape, color) = (targetShape, targetColor);   // a twin: the answer is the same for both
            else
            {
                // Distractors: another shape (so the asked shape stays unique) and an unused colour (or, varied, sometimes the asked one).
                if (distractorShapes.Length == 0) break;
                shape = rng.Pick(distractorShapes);
                if (v is not null && rng.NextDouble() < v.SameColourDistractorShare) color = targetColor;
                else if (freeColors.Count == 0) break;
                else color = freeColors[rng.Next(freeColors.Count)];
            }
            var slot = Place(rng, cfg, slots);
            if (slot == null)
            {
                if (k == 0)
                    throw new InvalidOperationException("Cannot place the first object; check the size options.");
                continue; // crowded image: fewer distractors
            }
            slots.Add(slot);
            freeColors.Remove(color);
            byte[] rgb = v is null ? [color.R, color.G, color.B] : Shade(rng, color, bg, v);
            var (apex, height) = v is null || shape != "triangle" ? (0f, 1f) : ((float)(rng.NextDouble() * 0.3 - 0.15), (float)(0.8 + 0.2 * rng.NextDouble()));
            objects.Add(new SynthObject(shape, color.Name, slot, rgb, apex, height)); // Box is measured after drawing
        }
        if (v is null) return new Scene(kind, bg, objects, slots);
        NamedColor? second = kind is "flat" or "light" or "dark" ? null : Near(rng, bg, 20);
        return new Scene(kind, bg, objects, slots, second, rng.NextDouble() < v.AntialiasShare, rng.NextDouble() < v.DownscaledShare, rng.NextULong());
    }

    /// <summary>A near-grey background (the classic look) or a colour far enough from the asked one (a share of them just far
    /// enough), flat or textured.</summary>
    private static (string Kind, NamedColor Bg) PickVariedBackground(DeterministicRandom rng, NamedColor target, SynthVariation v)
    {
        if (rng.NextDouble() < v.GreyBackgroundShare) return PickBackground(rng, target, v.MinContrast);
        double farthest = rng.NextDouble() < v.NearContrastShare ? v.MinContrast + v.NearContrastBand : double.PositiveInfinity;
        for (int attempt = 0; attempt < 1024; attempt++)
        {
            var bg = new NamedColor("flat", (byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256));
            double d = target.DistanceTo(bg.R, bg.G, bg.B);
            if (d < v.MinContrast || d > farthest) continue;
            string kind = rng.NextDouble() < v.TexturedShare ? rng.Pick(["noise", "stripes", "gradient"]) : "flat";
            return (kind, bg with { Name = kind });
        }
        return PickBackground(rng, target, v.MinContrast);
    }

    /// <summary>A colour within <paramref name="max"/> per channel of <paramref name="c"/>.</summary>
    private static NamedColor Near(DeterministicRandom rng, NamedColor c, int max)
    {
        byte Ch(byte x) => (byte)Math.Clamp(x + rng.NextInclusive(-max, max), 0, 255);
        return c with { R = Ch(c.R), G = Ch(c.G), B = Ch(c.B) };
    }

    /// <summary>A tint or a shade: <paramref name="c"/> mixed 15-65% toward white or toward black (light pink, dark green); the
    /// caller keeps only those still nearer their own colour than any other by the margin.</summary>
    private static NamedColor Tint(DeterministicRandom rng, NamedColor c)
    {
        int to = rng.NextBool() ? 255 : 0;
        double t = 0.15 + 0.5 * rng.NextDouble();
        byte Ch(byte x) => (byte)Math.Clamp((int)Math.Round(x + (to - x) * t), 0, 255);
        return c with { R = Ch(c.R), G = Ch(c.G), B = Ch(c.B) };
    }

    /// <summary>
    /// A shade of <paramref name="color"/>: nearer it than any other palette colour by the margin, and contrasting with
    /// the background; the palette's exact value a share of the time.
    /// </summary>
    private static byte[] Shade(DeterministicRandom rng, NamedColor color, NamedColor bg, SynthVariation v)
    {
        if (rng.NextDouble() >= v.ExactShadeShare)
            for (int attempt = 0; attempt < 64; attempt++)
            {
                var c = rng.NextDouble() < v.TintShare ? Near(rng, Tint(rng, color), v.ShadeJitter / 4) : Near(rng, color, v.ShadeJitter);
                double own = color.DistanceTo(c.R, c.G, c.B);
                if (SynthPalette.Colors.All(p => p.Name == color.Name || p.DistanceTo(c.R, c.G, c.B) >= own + v.ShadeMargin)
                    && bg.DistanceTo(c.R, c.G, c.B) >= v.MinContrast - 10)
                    return [c.R, c.G, c.B];
            }
        return [color.R, color.G, color.B];
    }

    private static (string Kind, NamedColor Bg) PickBackground(DeterministicRandom rng, NamedColor target, double minContrast)
    {
        bool light = rng.NextBool();
        for (int attempt = 0; attempt < 64; attempt++)
        {
            // Near-grey with a slight tint so the background varies without becoming a colour.
            int baseLevel = light ? rng.NextInclusive(225, 245) : rng.NextInclusive(10, 35);
            byte Ch() => (byte)Math.Clamp(baseLevel + rng.NextInclusive(-5, 5), 0, 255);
            var bg = new NamedColor(light ? "light" : "dark", Ch(), Ch(), Ch());
            if (target.DistanceTo(bg.R, bg.G, bg.B) >= minContrast)
                return (bg.Name, bg);
            light = !light; // e.g. white asked about: use a dark background
        }
        throw new InvalidOperationException($"No background contrasts with '{target.Name}' by {minContrast}; lower MinContrast.");
    }

    /// <summary>A free square slot [x0, y0, x1, y1) keeping MinGap to the others, or null.</summary>
    private static int[]? Place(DeterministicRandom rng, Config cfg, List<int[]> taken)
    {
        int size = cfg.O.ImageSize, gap = cfg.O.MinGap;
        for (int attempt = 0; attempt < 200; attempt++)
        {
            // Shrink towards the minimum as attempts fail, so crowded images still fit.
            int max = Math.Max(cfg.MinSize, cfg.MaxSize - attempt / 25 * 4);
            int s = rng.NextInclusive(cfg.MinSize, max);
            int x = rng.NextInclusive(0, size - s), y = rng.NextInclusive(0, size - s);
            var slot = new[] { x, y, x + s, y + s };
            if (taken.All(t => slot[0] >= t[2] + gap || t[0] >= slot[2] + gap || slot[1] >= t[3] + gap || t[1] >= slot[3] + gap))
                return slot;
        }
        return null;
    }

    internal static SKPath ShapePath(string shape, int[] slot, float apex = 0, float height = 1, float scale = 1)
    {
        float x0 = slot[0] * scale, y0 = slot[1] * scale, s = (slot[2] - slot[0]) * scale;
        float cx = x0 + s / 2f, cy = y0 + s / 2f;
        var path = new SKPath();
        switch (shape)
        {
            case "circle":
                path.AddOval(new SKRect(x0, y0, x0 + s, y0 + s));
                break;
            case "square":
                path.AddRect(new SKRect(x0, y0, x0 + s, y0 + s));
                break;
            case "triangle":
                path.AddPoly([new(cx + apex * s, y0 + (1 - height) * s), new(x0 + s, y0 + s), new(x0, y0 + s)]);
                break;
            case "diamond":
                path.AddPoly([new(cx, y0), new(x0 + s, cy), new(cx, y0 + s), new(x0, cy)]);
                break;
            case "star":
            {
                // Five points: width 2R cos 18deg fills the slot; centred vertically.
                float r = s / (2f * MathF.Cos(MathF.PI / 10));
                float top = y0 + (s - r * (1 + MathF.Cos(MathF.PI / 5))) / 2f;
                float scy = top + r;
                var pts = new SKPoint[10];
                for (int k = 0; k < 10; k++)
                {
                    float rad = k % 2 == 0 ? r : r * 0.45f;
                    float a = -MathF.PI / 2 + k * MathF.PI / 5;
                    pts[k] = new SKPoint(cx + rad * MathF.Cos(a), scy + rad * MathF.Sin(a));
                }
                path.AddPoly(pts);
                break;
            }
            case "hexagon":
            {
                float r = s / 2f, h = r * MathF.Sqrt(3) / 2f;
                path.AddPoly([new(x0, cy), new(cx - r / 2, cy - h), new(cx + r / 2, cy - h),
                              new(x0 + s, cy), new(cx + r / 2, cy + h), new(cx - r / 2, cy + h)]);
                break;
            }
            case "cross":
            {
                float t = s / 3f;
                path.AddPoly([new(x0 + t, y0), new(x0 + 2 * t, y0), new(x0 + 2 * t, y0 + t), new(x0 + s, y0 + t),
                              new(x0 + s, y0 + 2 * t), new(x0 + 2 * t, y0 + 2 * t), new(x0 + 2 * t, y0 + s),
                              new(x0 + t, y0 + s), new(x0 + t, y0 + 2 * t), new(x0, y0 + 2 * t), new(x0, y0 + t), new(x0 + t, y0 + t)]);
                break;
            }
            default:
                throw new ArgumentException($"Unknown shape '{shape}'.");
        }
        return path;
    }

    /// <summary>
    /// Draws the scene and returns it with each object's box set to the exact pixel extent of its
    /// colour inside its slot (slots keep apart and the background contrasts, so nothing else has it).
    /// </summary>
    internal static (Scene Scene, byte[] Png) Render(Scene scene, int size)
    {
        int scale = scene.Downscaled ? 2 : 1;
        using var canvasBitmap = new SKBitmap(new SKImageInfo(size * scale, size * scale, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(canvasBitmap))
        {
            DrawBackground(canvas, scene, size * scale);
            // Hard edges unless the scene varies: then every interior pixel still has exactly its object's shade.
            using var paint = new SKPaint { IsAntialias = scene.Antialias, Style = SKPaintStyle.Fill };
            for (int k = 0; k < scene.Objects.Count; k++)
            {
                var ob = scene.Objects[k];
                paint.Color = new SKColor(ob.Rgb[0], ob.Rgb[1], ob.Rgb[2]);
                using var path = ShapePath(ob.Shape, scene.Slots[k], ob.Apex, ob.Height, scale);
                canvas.DrawPath(path, paint);
            }
        }
        using var bitmap = scale == 1 ? canvasBitmap.Copy() : canvasBitmap.Resize(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Opaque),
            new SKSamplingOptions(SKCubicResampler.CatmullRom));
        // A scaled-down scene keeps its interiors within a step or two of the shade; classic scenes match exactly.
        int tolerance = scene.Downscaled ? 3 : 0;

        var pixels = bitmap.GetPixelSpan();
        var measured = new List<SynthObject>(scene.Objects.Count);
        for (int k = 0; k < scene.Objects.Count; k++)
        {
            var c = scene.Objects[k].Rgb;
            var slot = scene.Slots[k];
            int x0 = int.MaxValue, y0 = int.MaxValue, x1 = -1, y1 = -1;
            for (int y = slot[1]; y < slot[3]; y++)
            for (int x = slot[0]; x < slot[2]; x++)
            {
                int at = (y * size + x) * 4;
                if (Math.Abs(pixels[at] - c[0]) > tolerance || Math.Abs(pixels[at + 1] - c[1]) > tolerance || Math.Abs(pixels[at + 2] - c[2]) > tolerance)
                    continue;
                x0 = Math.Min(x0, x); y0 = Math.Min(y0, y);
                x1 = Math.Max(x1, x); y1 = Math.Max(y1, y);
            }
            if (x1 < 0)
                throw new InvalidOperationException($"{scene.Objects[k].Shape} in slot [{string.Join(", ", slot)}] drew no pixels.");
            measured.Add(scene.Objects[k] with { Box = [x0, y0, x1 + 1, y1 + 1] });
        }

        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return (scene with { Objects = measured }, data.ToArray());
    }

    /// <summary>The background: flat, or with noise, stripes or a gradient between its two colours.</summary>
    private static void DrawBackground(SKCanvas canvas, Scene scene, int side)
    {
        var a = scene.Background;
        canvas.Clear(new SKColor(a.R, a.G, a.B));
        if (scene.Background2 is not { } b) return;
        using var paint = new SKPaint { IsAntialias = false };
        switch (scene.BackgroundKind)
        {
            case "gradient":
                paint.Shader = SKShader.CreateLinearGradient(new SKPoint(0, 0), new SKPoint(side, side),
                    [new SKColor(a.R, a.G, a.B), new SKColor(b.R, b.G, b.B)], SKShaderTileMode.Clamp);
                canvas.DrawRect(0, 0, side, side, paint);
                break;
            case "stripes":
                paint.Color = new SKColor(b.R, b.G, b.B);
                int width = 3 + (int)(scene.TextureSeed % 6);
                bool vertical = (scene.TextureSeed >> 8) % 2 == 0;
                for (int at = 0; at < side; at += 2 * width)
                    canvas.DrawRect(vertical ? SKRect.Create(at, 0, width, side) : SKRect.Create(0, at, side, width), paint);
                break;
            default:   // noise: each pixel between the two colours
                var rng = new Random((int)(scene.TextureSeed & 0x7fffffff));
                for (int y = 0; y < side; y++)
                for (int x = 0; x < side; x++)
                {
                    double t = rng.NextDouble();
                    paint.Color = new SKColor((byte)(a.R + t * (b.R - a.R)), (byte)(a.G + t * (b.G - a.G)), (byte)(a.B + t * (b.B - a.B)));
                    canvas.DrawPoint(x, y, paint);
                }
                break;
        }
    }
}
