using System.Text.Json.Nodes;
using LlavaMech.Datasets.Manifest;
using SkiaSharp;

namespace LlavaMech.Training.Tests;

/// <summary>
/// A second scene generator for the colour world, written apart from the training one (SynthColors) so that the toy
/// model is measured on pictures it was not drawn for: another canvas size (112 px, resized by the model's processor),
/// anti-aliased drawing, CSS colours instead of the training palette's RGB values, flat background colours that never
/// appear in training (tinted pastels and deep tones, not near-greys), objects of 20-40% of the side placed in the cells
/// of a jittered 2 x 2 layout, isosceles triangles with the apex up, one to three objects, and distractors that share
/// the asked object's colour about a fifth of the time. The question's shape is unique in the scene, so the answer
/// is exact. Deterministic for a seed; example i does not depend on the count.
/// </summary>
public static class IndependentScenes
{
    public const int Side = 112;

    /// <summary>The colour words with plain CSS values (the training palette has other values for most).</summary>
    public static readonly (string Name, SKColor Rgb)[] Colors =
    [
        ("red", new SKColor(255, 0, 0)), ("green", new SKColor(0, 128, 0)), ("blue", new SKColor(0, 0, 255)),
        ("yellow", new SKColor(255, 255, 0)), ("orange", new SKColor(255, 165, 0)), ("purple", new SKColor(128, 0, 128)),
        ("pink", new SKColor(255, 192, 203)), ("brown", new SKColor(139, 69, 19)), ("black", new SKColor(0, 0, 0)),
        ("white", new SKColor(255, 255, 255)), ("gray", new SKColor(128, 128, 128)),
    ];

    public static readonly string[] Shapes = ["circle", "square", "triangle"];

    /// <summary>Flat backgrounds that are neither near-grey nor a colour word's own value.</summary>
    private static readonly SKColor[] Backgrounds =
    [
        new(176, 206, 232), new(196, 232, 206), new(236, 218, 170), new(222, 212, 242), new(244, 226, 214),
        new(52, 64, 84), new(22, 62, 46), new(30, 34, 78), new(86, 40, 52), new(70, 60, 30),
    ];

    /// <summary>One object: its shape, colour word and pixel box [x0, y0, x1, y1) on the 112 px canvas.</summary>
    public sealed record Item(string Shape, string Color, int[] Box);

    /// <summary>Writes <paramref name="count"/> VQA scenes (PNG + manifest.jsonl with object boxes and every object).</summary>
    public static IReadOnlyList<ManifestExample> Write(string dir, int count, int seed)
    {
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var examples = new List<ManifestExample>(count);
        for (int i = 0; i < count; i++)
        {
            var (items, background) = Scene(seed, i);
            string id = $"indep-{i:D5}", rel = $"images/{id}.png", abs = Path.Combine(dir, rel);
            File.WriteAllBytes(abs, Draw(items, background));
            var asked = items[0];
            var meta = new JsonObject
            {
                ["shape"] = asked.Shape,
                ["num_objects"] = items.Count,
                ["background_rgb"] = new JsonArray(background.Red, background.Green, background.Blue),
                ["generator"] = "independent",
                ["objects"] = new JsonArray(items.Select(o => (JsonNode)new JsonObject
                {
                    ["shape"] = o.Shape, ["color"] = o.Color, ["box"] = new JsonArray(o.Box.Select(v => (JsonNode)v).ToArray()),
                }).ToArray()),
            };
            examples.Add(new ManifestExample(id, ManifestTasks.Vqa, abs, rel,
                $"USER: <image>\nWhat is the color of the {asked.Shape}?\nASSISTANT: The color of the {asked.Shape} is",
                asked.Color, asked.Box.Select(v => (double)v).ToArray(), meta.ToJsonString(), i + 1));
        }
        ManifestWriter.Write(Path.Combine(dir, "manifest.jsonl"), examples);
        return examples;
    }

    /// <summary>Scene i: items[0] is asked about. Colours and shapes of the asked object cycle, so every colour and shape is equally common.</summary>
    public static (IReadOnlyList<Item> Items, SKColor Background) Scene(int seed, int i)
    {
        var rng = new Random(unchecked(seed * 1_000_003 + i * 7_919 + 0x5ce7e));
        var (colorName, color) = Colors[i % Colors.Length];
        string shape = Shapes[(i / Colors.Length) % Shapes.Length];
        var bg = Backgrounds.Where(b => Distance(b, color) >= 110).OrderBy(_ => rng.Next()).First();

        int n = rng.Next(1, 4);
        // The 2 x 2 cells in a random order; each object gets one cell and a size of 20-40% of the side.
        var cells = Enumerable.Range(0, 4).OrderBy(_ => rng.Next()).ToArray();
        var others = Shapes.Where(s => s != shape).ToArray();
        var items = new List<Item>();
        for (int k = 0; k < n; k++)
        {
            int size = (int)Math.Round(Side * (0.20 + 0.20 * rng.NextDouble()));
            int cx = cells[k] % 2 * Side / 2, cy = cells[k] / 2 * Side / 2, room = Side / 2 - size;
            int x = cx + (room > 0 ? rng.Next(0, room + 1) : room / 2), y = cy + (room > 0 ? rng.Next(0, room + 1) : room / 2);
            x = Math.Clamp(x, 0, Side - size);
            y = Math.Clamp(y, 0, Side - size);
            string s = k == 0 ? shape : others[rng.Next(others.Length)];
            string c;
            if (k == 0) c = colorName;
            else if (rng.NextDouble() < 0.2) c = colorName;   // a distractor of the same colour
            else
            {
                var choices = Colors.Where(o => o.Name != colorName && Distance(bg, o.Rgb) >= 110).ToArray();
                c = choices[rng.Next(choices.Length)].Name;
            }
            items.Add(new Item(s, c, [x, y, x + size, y + size]));
        }
        return (items, bg);
    }

    public static byte[] Draw(IReadOnlyList<Item> items, SKColor background)
    {
        var info = new SKImageInfo(Side, Side, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var surface = SKSurface.Create(info);
        var canvas = surface.Canvas;
        canvas.Clear(background);
        using var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill };
        foreach (var it in items)
        {
            paint.Color = Colors.First(c => c.Name == it.Color).Rgb;
            float x0 = it.Box[0], y0 = it.Box[1], x1 = it.Box[2], y1 = it.Box[3];
            switch (it.Shape)
            {
                case "circle":
                    canvas.DrawCircle((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, paint);
                    break;
                case "square":
                    canvas.DrawRect(SKRect.Create(x0, y0, x1 - x0, y1 - y0), paint);
                    break;
                default:
                    using (var path = new SKPath())
                    {
                        path.MoveTo((x0 + x1) / 2, y0);
                        path.LineTo(x1, y1);
                        path.LineTo(x0, y1);
                        path.Close();
                        canvas.DrawPath(path, paint);
                    }
                    break;
            }
        }
        using var image = surface.Snapshot();
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }

    private static double Distance(SKColor a, SKColor b)
    {
        double dr = a.Red - b.Red, dg = a.Green - b.Green, db = a.Blue - b.Blue;
        return Math.Sqrt(dr * dr + dg * dg + db * db);
    }
}
