using System.Text.Json;
using LlavaMech.Datasets.Manifest;
using SkiaSharp;

namespace LlavaMech.Datasets.Tests;

public sealed class SynthColorsTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void Same_seed_gives_byte_identical_manifest_and_images_and_another_seed_differs()
    {
        var a = SynthColors.Generate(_tmp.File("a"), 12, 123);
        var b = SynthColors.Generate(_tmp.File("b"), 12, 123);
        var c = SynthColors.Generate(_tmp.File("c"), 12, 124);

        Assert.Equal(File.ReadAllBytes(a.ManifestPath), File.ReadAllBytes(b.ManifestPath));
        foreach (var ex in a.Examples.Where(e => e.IsVqa))
            Assert.Equal(File.ReadAllBytes(ex.ImagePath!), File.ReadAllBytes(Path.Combine(_tmp.File("b"), ex.ImageRelative!)));
        Assert.NotEqual(File.ReadAllBytes(a.ManifestPath), File.ReadAllBytes(c.ManifestPath));
    }

    [Fact]
    public void Example_i_does_not_depend_on_the_count()
    {
        var big = File.ReadAllLines(SynthColors.Generate(_tmp.File("big"), 12, 5).ManifestPath);
        var small = File.ReadAllLines(SynthColors.Generate(_tmp.File("small"), 5, 5).ManifestPath);
        Assert.Equal(big[..5], small[..5]);          // VQA
        Assert.Equal(big[12..17], small[5..10]);     // TQA
    }

    [Fact]
    public void Vqa_examples_are_well_formed_balanced_and_their_pixels_match_the_labels()
    {
        var gen = SynthColors.Generate(_tmp.File("d"), 44, 3);
        var read = ManifestReader.Read(gen.ManifestPath);
        Assert.Empty(read.Rejects);
        var vqa = read.Examples.Where(e => e.IsVqa).ToList();
        Assert.Equal(44, vqa.Count);
        Assert.Equal(44, read.Examples.Count(e => e.Task == ManifestTasks.Tqa));

        var palette = SynthPalette.Colors.ToDictionary(c => c.Name);
        var objectCounts = new HashSet<int>();
        foreach (var ex in vqa)
        {
            using var meta = JsonDocument.Parse(ex.MetadataJson);
            var m = meta.RootElement;
            string shape = m.GetProperty("shape").GetString()!;
            Assert.Contains(shape, SynthPalette.SingleTokenShapes);
            Assert.Equal($"USER: <image>\nWhat is the color of the {shape}?\nASSISTANT: The color of the {shape} is", ex.Prompt);
            Assert.Equal($"images/{ex.Id}.png", ex.ImageRelative);

            var objects = m.GetProperty("objects").EnumerateArray()
                .Select(o => (Shape: o.GetProperty("shape").GetString()!, Color: o.GetProperty("color").GetString()!,
                              Box: o.GetProperty("box").EnumerateArray().Select(v => v.GetInt32()).ToArray()))
                .ToList();
            Assert.Equal(m.GetProperty("num_objects").GetInt32(), objects.Count);
            Assert.InRange(objects.Count, 1, 4);
            objectCounts.Add(objects.Count);
            Assert.Equal((shape, ex.Expected!), (objects[0].Shape, objects[0].Color));
            Assert.Equal(objects[0].Box.Select(v => (double)v), ex.ObjectBox!);
            Assert.Single(objects, o => o.Shape == shape);                               // asked shape is unique
            Assert.Equal(objects.Count, objects.Select(o => o.Color).Distinct().Count()); // distractors: other colours

            var bgRgb = m.GetProperty("background_rgb").EnumerateArray().Select(v => v.GetByte()).ToArray();
            Assert.Equal(bgRgb.Average(v => v) > 128 ? "light" : "dark", m.GetProperty("background").GetString());

            using var bmp = Images.Decode(ex.ImagePath!);
            Assert.Equal((84, 84), (bmp.Width, bmp.Height));
            for (int k = 0; k < objects.Count; k++)
            {
                var (s, col, box) = objects[k];
                Assert.True(box[0] >= 0 && box[1] >= 0 && box[2] <= 84 && box[3] <= 84 && box[0] < box[2] && box[1] < box[3],
                    $"{ex.Id}: box [{string.Join(",", box)}] outside 84x84");
                // Slots are >= 14 px (a patch); thin tips of stars/hexagons may leave a pixel or two uncovered.
                int minSide = SynthPalette.SingleTokenShapes.Contains(s) ? 14 : 12;
                Assert.True(Math.Max(box[2] - box[0], box[3] - box[1]) >= minSide, $"{ex.Id}: {s} smaller than a patch");
                var named = palette[col];
                Assert.True(named.DistanceTo(bgRgb[0], bgRgb[1], bgRgb[2]) >= 80, $"{ex.Id}: {col} on a too similar background");
                // The pixel at the box centre has exactly the named colour (no anti-aliasing).
                var px = bmp.GetPixel((box[0] + box[2]) / 2, (box[1] + box[3]) / 2);
                Assert.Equal(new SKColor(named.R, named.G, named.B), px);
                for (int j = 0; j < k; j++) // boxes keep apart
                    Assert.True(box[0] >= objects[j].Box[2] || objects[j].Box[0] >= box[2]
                                || box[1] >= objects[j].Box[3] || objects[j].Box[1] >= box[3], $"{ex.Id}: boxes overlap");
            }

            // Every pixel of an object's colour lies inside its box; a square fills its box exactly.
            var (tShape, tColor, tBox) = objects[0];
            var target = new SKColor(palette[tColor].R, palette[tColor].G, palette[tColor].B);
            int inside = 0;
            for (int y = 0; y < 84; y++)
            for (int x = 0; x < 84; x++)
            {
                if (bmp.GetPixel(x, y) != target)
                    continue;
                Assert.True(x >= tBox[0] && x < tBox[2] && y >= tBox[1] && y < tBox[3], $"{ex.Id}: {tColor} pixel ({x},{y}) outside its box");
                inside++;
            }
            int area = (tBox[2] - tBox[0]) * (tBox[3] - tBox[1]);
            if (tShape == "square")
                Assert.Equal(area, inside);
            if (tShape == "circle")
                Assert.InRange(inside / (double)area, 0.70, 0.86); // pi/4 on a pixel grid
        }

        Assert.Equal([1, 2, 3, 4], objectCounts.Order());
        // Shuffled rounds: 44 = 4 x 11 colours, 44 = 14-15 x 3 shapes.
        Assert.All(vqa.GroupBy(e => e.Expected), g => Assert.Equal(4, g.Count()));
        Assert.Equal(11, vqa.Select(e => e.Expected).Distinct().Count());
        Assert.All(vqa.GroupBy(e => e.Prompt), g => Assert.InRange(g.Count(), 14, 15));
    }

    [Fact]
    public void Image_size_is_configurable_and_object_sizes_scale_with_it()
    {
        var gen = SynthColors.Generate(_tmp.File("big"), 3, 1, new SynthOptions { ImageSize = 336, TextQaCount = 0 });
        var read = ManifestReader.Read(gen.ManifestPath);
        Assert.Empty(read.Rejects);
        Assert.Equal(3, read.Examples.Count);
        foreach (var ex in read.Examples)
        {
            Assert.Equal((336, 336), ManifestReader.ReadImageSize(ex.ImagePath!));
            var b = ex.ObjectBox!;
            Assert.InRange(b[2] - b[0], 56, 121);
            Assert.True(b[2] <= 336 && b[3] <= 336);
        }
    }

    [Fact]
    public void Every_shape_draws_its_named_colour_at_the_box_centre()
    {
        // Ask about every drawable shape, including the multi-token ones.
        var gen = SynthColors.Generate(_tmp.File("all"), 14, 8,
            new SynthOptions { QuestionShapes = SynthPalette.Shapes, MaxObjects = 1, TextQaCount = 0 });
        var seen = new HashSet<string>();
        foreach (var ex in gen.Examples)
        {
            using var bmp = Images.Decode(ex.ImagePath!);
            var b = ex.ObjectBox!.Select(v => (int)v).ToArray();
            var c = SynthPalette.Color(ex.Expected!);
            Assert.Equal(new SKColor(c.R, c.G, c.B), bmp.GetPixel((b[0] + b[2]) / 2, (b[1] + b[3]) / 2));
            // The box is tight: each edge row/column holds a pixel of the object.
            var col = new SKColor(c.R, c.G, c.B);
            Assert.Contains(Enumerable.Range(b[0], b[2] - b[0]), x => bmp.GetPixel(x, b[1]) == col);
            Assert.Contains(Enumerable.Range(b[0], b[2] - b[0]), x => bmp.GetPixel(x, b[3] - 1) == col);
            Assert.Contains(Enumerable.Range(b[1], b[3] - b[1]), y => bmp.GetPixel(b[0], y) == col);
            Assert.Contains(Enumerable.Range(b[1], b[3] - b[1]), y => bmp.GetPixel(b[2] - 1, y) == col);
            seen.Add(JsonDocument.Parse(ex.MetadataJson).RootElement.GetProperty("shape").GetString()!);
        }
        Assert.Equal(SynthPalette.Shapes.Order(), seen.Order());
    }

    [Fact]
    public void Text_qa_set_is_balanced_uses_known_objects_and_matches_the_combined_manifest()
    {
        var tqa = SynthColors.GenerateTextQa(_tmp.File("t"), 33, 9);
        Assert.Equal(Path.Combine(_tmp.File("t"), "tqa.jsonl"), tqa.ManifestPath);
        var read = ManifestReader.Read(tqa.ManifestPath);
        Assert.Empty(read.Rejects);
        Assert.Equal(33, read.Examples.Count);

        var colorOf = SynthPalette.TextQaObjects.ToDictionary(o => o.Name, o => o.Color);
        foreach (var ex in read.Examples)
        {
            Assert.Equal(ManifestTasks.Tqa, ex.Task);
            Assert.Null(ex.ImagePath);
            Assert.Null(ex.ObjectBox);
            string obj = JsonDocument.Parse(ex.MetadataJson).RootElement.GetProperty("object").GetString()!;
            Assert.Equal($"USER: What is the color of the {obj}?\nASSISTANT: The color of the {obj} is", ex.Prompt);
            Assert.Equal(colorOf[obj], ex.Expected);
        }
        Assert.All(read.Examples.GroupBy(e => e.Expected), g => Assert.Equal(3, g.Count()));
        Assert.Equal(33, read.Examples.Select(e => e.Prompt).Distinct().Count()); // dealt without repeats while objects remain

        var combined = File.ReadAllLines(SynthColors.Generate(_tmp.File("t"), 33, 9).ManifestPath);
        Assert.Equal(File.ReadAllLines(tqa.ManifestPath), combined[33..]);
    }

    [Fact]
    public void Palette_and_object_list_meet_the_spec()
    {
        Assert.Equal(11, SynthPalette.Colors.Count);
        Assert.True(SynthPalette.TextQaObjects.Count >= 20);
        Assert.Equal(SynthPalette.TextQaObjects.Count, SynthPalette.TextQaObjects.Select(o => o.Name).Distinct().Count());
        Assert.All(SynthPalette.Colors, c => Assert.InRange(SynthPalette.TextQaObjects.Count(o => o.Color == c.Name), 3, 5));
        // Clearly separable colours: every pair at least 90 apart in RGB.
        foreach (var a in SynthPalette.Colors)
        foreach (var b in SynthPalette.Colors.Where(b => b.Name != a.Name))
            Assert.True(a.DistanceTo(b.R, b.G, b.B) >= 90, $"{a.Name} vs {b.Name}");
    }

    [Fact]
    public void Bad_options_are_refused_with_a_clear_message()
    {
        var e = Assert.Throws<ArgumentException>(() => SynthColors.Generate(_tmp.File("x"), 1, 1, new SynthOptions { Shapes = ["blob"] }));
        Assert.Contains("Unknown shape 'blob'", e.Message);
        e = Assert.Throws<ArgumentException>(() => SynthColors.Generate(_tmp.File("x"), 1, 1, new SynthOptions { Colors = ["teal"] }));
        Assert.Contains("Unknown colour 'teal'", e.Message);
        e = Assert.Throws<ArgumentException>(() => SynthColors.Generate(_tmp.File("x"), 1, 1, new SynthOptions { ImageSize = 10 }));
        Assert.Contains("MaxObjectSize", e.Message);
    }
}
