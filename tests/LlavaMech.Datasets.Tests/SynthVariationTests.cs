using System.Text.Json;
using SkiaSharp;

namespace LlavaMech.Datasets.Tests;

/// <summary>Varied scenes (<see cref="SynthVariation"/>): everything but the answer varies, and the labels stay exact.</summary>
public sealed class SynthVariationTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private static SynthOptions Varied => new() { TextQaCount = 0, Variation = new SynthVariation() };

    [Fact]
    public void Varied_scenes_are_deterministic_and_the_classic_generator_is_unchanged_by_them()
    {
        var a = SynthColors.Generate(_tmp.File("a"), 16, 7, Varied);
        var b = SynthColors.Generate(_tmp.File("b"), 16, 7, Varied);
        Assert.Equal(File.ReadAllBytes(a.ManifestPath), File.ReadAllBytes(b.ManifestPath));
        foreach (var e in a.Examples)
            Assert.Equal(File.ReadAllBytes(e.ImagePath!), File.ReadAllBytes(Path.Combine(_tmp.File("b"), e.ImageRelative!)));
        var classic = SynthColors.Generate(_tmp.File("c"), 16, 7, new SynthOptions { TextQaCount = 0 });
        Assert.DoesNotContain("\"rgb\"", File.ReadAllText(classic.ManifestPath));
    }

    [Fact]
    public void Every_object_keeps_its_colours_name_its_box_and_an_interior_in_its_drawn_shade()
    {
        var gen = SynthColors.Generate(_tmp.File("v"), 220, 11, Varied);
        var variation = Varied.Variation!;
        int shaded = 0, twins = 0, sameColour = 0, antialiased = 0, downscaled = 0, textured = 0, coloured = 0, nearContrast = 0;
        var sides = new List<int>();
        foreach (var e in gen.Examples)
        {
            using var doc = JsonDocument.Parse(e.MetadataJson);
            var m = doc.RootElement;
            antialiased += m.GetProperty("antialias").GetBoolean() ? 1 : 0;
            downscaled += m.GetProperty("downscaled").GetBoolean() ? 1 : 0;
            string kind = m.GetProperty("background").GetString()!;
            textured += kind is "noise" or "stripes" or "gradient" ? 1 : 0;
            coloured += kind is not ("light" or "dark") ? 1 : 0;
            var bg = m.GetProperty("background_rgb").EnumerateArray().Select(v => v.GetInt32()).ToArray();
            double bgDistance = SynthPalette.Color(e.Expected!).DistanceTo((byte)bg[0], (byte)bg[1], (byte)bg[2]);
            if (kind is not ("light" or "dark"))
            {
                Assert.True(bgDistance >= variation.MinContrast, $"{e.Id}: background {bgDistance:F0} from the asked colour");
                nearContrast += bgDistance <= variation.MinContrast + variation.NearContrastBand ? 1 : 0;
            }
            var objects = m.GetProperty("objects").EnumerateArray().Select(o => (
                Shape: o.GetProperty("shape").GetString()!, Color: o.GetProperty("color").GetString()!,
                Box: o.GetProperty("box").EnumerateArray().Select(v => v.GetInt32()).ToArray(),
                Rgb: o.GetProperty("rgb").EnumerateArray().Select(v => (byte)v.GetInt32()).ToArray())).ToList();
            var asked = objects[0];
            Assert.Equal(e.Expected, asked.Color);
            // Any other object of the asked shape has the asked colour: the answer is exact.
            Assert.All(objects.Where(o => o.Shape == asked.Shape), o => Assert.Equal(asked.Color, o.Color));
            twins += objects.Skip(1).Count(o => o.Shape == asked.Shape);
            sameColour += objects.Skip(1).Count(o => o.Color == asked.Color && o.Shape != asked.Shape);
            using var bmp = SKBitmap.Decode(e.ImagePath!);
            Assert.Equal((84, 84), (bmp.Width, bmp.Height));
            foreach (var o in objects)
            {
                var named = SynthPalette.Color(o.Color);
                double own = named.DistanceTo(o.Rgb[0], o.Rgb[1], o.Rgb[2]);
                // The shade is nearer its own colour than any other palette colour.
                Assert.All(SynthPalette.Colors.Where(c => c.Name != o.Color), c => Assert.True(c.DistanceTo(o.Rgb[0], o.Rgb[1], o.Rgb[2]) > own));
                shaded += own > 0 ? 1 : 0;
                sides.Add(Math.Max(o.Box[2] - o.Box[0], o.Box[3] - o.Box[1]));
                // The box is the measured extent of the shade: its edges hold such pixels.
                int hits = 0;
                for (int y = o.Box[1]; y < o.Box[3]; y++)
                    for (int x = o.Box[0]; x < o.Box[2]; x++)
                    {
                        var p = bmp.GetPixel(x, y);
                        if (Math.Abs(p.Red - o.Rgb[0]) <= 3 && Math.Abs(p.Green - o.Rgb[1]) <= 3 && Math.Abs(p.Blue - o.Rgb[2]) <= 3) hits++;
                    }
                Assert.True(hits >= 10, $"{e.Id}: {o.Shape} {o.Color} has {hits} pixels of its shade");
            }
        }
        int n = gen.Examples.Count;
        output($"shaded {shaded}, twins {twins}, same-colour distractors {sameColour}, antialiased {antialiased}/{n}, downscaled {downscaled}/{n}, coloured backgrounds {coloured}/{n} ({nearContrast} near the contrast limit), textured {textured}/{n}, sides {sides.Min()}-{sides.Max()}");
        Assert.InRange(antialiased, n / 4, 3 * n / 4);
        Assert.InRange(downscaled, n / 8, n / 2);
        Assert.InRange(coloured, n / 2, 9 * n / 10);
        // A share of the colour backgrounds lie just past the contrast limit (black on dark slate): hard scenes, not rare ones.
        Assert.InRange(nearContrast, coloured / 5, 2 * coloured / 3);
        Assert.True(textured > n / 8 && twins > 0 && sameColour > 10 && shaded > n);
        Assert.True(sides.Min() <= 16 && sides.Max() >= 36, $"sides {sides.Min()}-{sides.Max()}");
    }

    private static void output(string s) => Console.WriteLine(s);
}
