using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using LlavaMech.Datasets.Manifest;

namespace LlavaMech.Datasets;

public enum CocoImageMode
{
    /// <summary>Copy each used image into outDir/images (self-contained dataset folder).</summary>
    Copy,

    /// <summary>Symbolic links in outDir/images pointing at the originals (no disk cost).</summary>
    Symlink,
}

public sealed record CocoImportOptions
{
    /// <summary>Category names to ask about (case-insensitive); null = every category.</summary>
    public IReadOnlyList<string>? Categories { get; init; }

    /// <summary>Stop after this many examples (images in id order); null = all.</summary>
    public int? MaxExamples { get; init; }

    public CocoImageMode ImageMode { get; init; } = CocoImageMode.Copy;

    /// <summary>Skip objects whose box is narrower or lower than this many pixels.</summary>
    public double MinBoxSide { get; init; }

    public string IdPrefix { get; init; } = "coco";
}

/// <param name="ManifestPath">outDir/manifest.jsonl.</param>
/// <param name="MissingImages">Qualifying images whose file was not in imagesDir (skipped).</param>
/// <param name="SmallBoxes">Objects skipped for <see cref="CocoImportOptions.MinBoxSide"/> or a degenerate box.</param>
public sealed record CocoImportResult(
    string ManifestPath, IReadOnlyList<ManifestExample> Examples, int ImagesScanned, int MissingImages, int SmallBoxes);

/// <summary>
/// Turns a COCO instances file into colour questions in the paper's template. An (image,
/// category) pair qualifies when the image holds exactly one instance of the category and it is
/// not a crowd region, so "the {category}" names one object and object_box locates it. COCO has
/// no colour labels, so the examples carry no expected answer.
/// </summary>
public static class CocoImporter
{
    public static CocoImportResult Import(string instancesJson, string imagesDir, string outDir, CocoImportOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(instancesJson);
        ArgumentException.ThrowIfNullOrWhiteSpace(imagesDir);
        ArgumentException.ThrowIfNullOrWhiteSpace(outDir);
        var o = options ?? new CocoImportOptions();
        var coco = Load(instancesJson);

        var categories = coco.Categories!.GroupBy(c => c.Id).ToDictionary(g => g.Key, g => g.First());
        HashSet<long>? wanted = null;
        if (o.Categories != null)
        {
            var byName = coco.Categories!.GroupBy(c => c.Name ?? "", StringComparer.OrdinalIgnoreCase)
                .ToDictionary(g => g.Key, g => g.First().Id, StringComparer.OrdinalIgnoreCase);
            var unknown = o.Categories.Where(n => !byName.ContainsKey(n)).ToList();
            if (unknown.Count > 0)
                throw new ArgumentException(
                    $"Unknown COCO categories: {string.Join(", ", unknown)} (the file has {string.Join(", ", byName.Keys.Take(20))}{(byName.Count > 20 ? ", ..." : "")}).");
            wanted = o.Categories.Select(n => byName[n]).ToHashSet();
        }

        var annsByImage = coco.Annotations!.GroupBy(a => a.ImageId).ToDictionary(g => g.Key, g => g.ToList());
        string dir = Path.GetFullPath(outDir);
        string imagesOut = Path.Combine(dir, "images");
        Directory.CreateDirectory(imagesOut);

        var examples = new List<ManifestExample>();
        int scanned = 0, missing = 0, small = 0;
        foreach (var img in coco.Images!.OrderBy(i => i.Id))
        {
            if (o.MaxExamples is int max && examples.Count >= max)
                break;
            scanned++;
            if (!annsByImage.TryGetValue(img.Id, out var anns))
                continue;
            var singles = anns.GroupBy(a => a.CategoryId)
                .Where(g => (wanted == null || wanted.Contains(g.Key)) && categories.ContainsKey(g.Key))
                .Where(g => g.Count() == 1 && g.First().IsCrowd == 0)
                .Select(g => g.First())
                .OrderBy(a => a.CategoryId)
                .ToList();
            if (singles.Count == 0)
                continue;

            string fileName = Path.GetFileName(img.FileName ?? "");
            string src = Path.Combine(imagesDir, fileName);
            if (fileName.Length == 0 || !File.Exists(src))
            {
                missing++;
                continue;
            }
            string dst = Path.Combine(imagesOut, fileName);
            bool placed = false;

            foreach (var ann in singles)
            {
                if (o.MaxExamples is int m && examples.Count >= m)
                    break;
                var box = ToBox(ann.Bbox, img.Width, img.Height);
                if (box == null || box[2] - box[0] < o.MinBoxSide || box[3] - box[1] < o.MinBoxSide)
                {
                    small++;
                    continue;
                }
                if (!placed)
                {
                    PlaceImage(src, dst, o.ImageMode);
                    placed = true;
                }
                var cat = categories[ann.CategoryId];
                string name = cat.Name ?? $"category {cat.Id}";
                var meta = new JsonObject
                {
                    ["category"] = name,
                    ["category_id"] = cat.Id,
                    ["supercategory"] = cat.Supercategory,
                    ["coco_image_id"] = img.Id,
                    ["coco_annotation_id"] = ann.Id,
                    ["file_name"] = img.FileName,
                    ["image_width"] = img.Width,
                    ["image_height"] = img.Height,
                    ["area"] = ann.Area,
                };
                string id = $"{o.IdPrefix}-{img.Id}-{name.Replace(' ', '_')}";
                examples.Add(new ManifestExample(id, ManifestTasks.Vqa, dst, $"images/{fileName}", SynthColors.VqaPrompt(name),
                    null, box, meta.ToJsonString(), examples.Count + 1));
            }
        }

        string manifest = Path.Combine(dir, SynthColors.ManifestFileName);
        ManifestWriter.Write(manifest, examples);
        return new CocoImportResult(manifest, examples, scanned, missing, small);
    }

    /// <summary>COCO [x, y, w, h] to [x0, y0, x1, y1], clipped to the image (float sums can overshoot).</summary>
    internal static double[]? ToBox(double[]? bbox, int width, int height)
    {
        if (bbox is not { Length: 4 } || bbox.Any(v => !double.IsFinite(v)))
            return null;
        double x0 = Math.Max(0, bbox[0]), y0 = Math.Max(0, bbox[1]);
        double x1 = bbox[0] + bbox[2], y1 = bbox[1] + bbox[3];
        if (width > 0)
            x1 = Math.Min(x1, width);
        if (height > 0)
            y1 = Math.Min(y1, height);
        // Round away float noise (0.1 + 0.2) so manifests stay readable and diff cleanly.
        var box = new[] { x0, y0, x1, y1 }.Select(v => Math.Round(v, 3)).ToArray();
        return box[0] < box[2] && box[1] < box[3] ? box : null;
    }

    private static void PlaceImage(string src, string dst, CocoImageMode mode)
    {
        if (File.Exists(dst) || new FileInfo(dst).LinkTarget != null)
            File.Delete(dst);
        if (mode == CocoImageMode.Symlink)
            File.CreateSymbolicLink(dst, Path.GetFullPath(src));
        else
            File.Copy(src, dst);
    }

    private static CocoFile Load(string path)
    {
        CocoFile? coco;
        try
        {
            // Typed, streamed: segmentation polygons are skipped, so even train2017 fits in memory.
            using var stream = File.OpenRead(path);
            coco = JsonSerializer.Deserialize<CocoFile>(stream);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Cannot read COCO instances file '{path}': {e.Message}", e);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"COCO instances file '{path}' is not valid COCO JSON: {e.Message}", e);
        }
        if (coco?.Images == null || coco.Annotations == null || coco.Categories == null)
            throw new InvalidDataException($"COCO instances file '{path}' lacks images, annotations or categories.");
        return coco;
    }

    private sealed class CocoFile
    {
        [JsonPropertyName("images")] public List<CocoImage>? Images { get; set; }
        [JsonPropertyName("annotations")] public List<CocoAnnotation>? Annotations { get; set; }
        [JsonPropertyName("categories")] public List<CocoCategory>? Categories { get; set; }
    }

    private sealed class CocoImage
    {
        [JsonPropertyName("id")] public long Id { get; set; }
        [JsonPropertyName("file_name")] public string? FileName { get; set; }
        [JsonPropertyName("width")] public int Width { get; set; }
        [JsonPropertyName("height")] public int Height { get; set; }
    }

    private sealed class CocoAnnotation
    {
        [JsonPropertyName("id")] public long Id { get; set; }
        [JsonPropertyName("image_id")] public long ImageId { get; set; }
        [JsonPropertyName("category_id")] public long CategoryId { get; set; }
        [JsonPropertyName("bbox")] public double[]? Bbox { get; set; }
        [JsonPropertyName("iscrowd")] public int IsCrowd { get; set; }
        [JsonPropertyName("area")] public double Area { get; set; }
    }

    private sealed class CocoCategory
    {
        [JsonPropertyName("id")] public long Id { get; set; }
        [JsonPropertyName("name")] public string? Name { get; set; }
        [JsonPropertyName("supercategory")] public string? Supercategory { get; set; }
    }
}
