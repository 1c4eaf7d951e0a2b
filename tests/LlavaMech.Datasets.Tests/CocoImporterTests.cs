using System.Text.Json;
using LlavaMech.Datasets.Manifest;
using SkiaSharp;

namespace LlavaMech.Datasets.Tests;

public sealed class CocoImporterTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly string _instances;
    private readonly string _images;

    public CocoImporterTests()
    {
        _images = _tmp.File("val2017");
        Images.WritePng(Path.Combine(_images, "000000000001.png"), 64, 48, SKColors.Red);
        Images.WritePng(Path.Combine(_images, "000000000002.png"), 64, 48, SKColors.Green);
        Images.WritePng(Path.Combine(_images, "000000000003.png"), 64, 48, SKColors.Blue);
        // image 4's file is absent on purpose.
        _instances = _tmp.File("instances.json");
        File.WriteAllText(_instances, """
        {
          "info": {"description": "tiny"},
          "images": [
            {"id": 3, "file_name": "000000000003.png", "width": 64, "height": 48},
            {"id": 1, "file_name": "000000000001.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "000000000002.png", "width": 64, "height": 48},
            {"id": 4, "file_name": "000000000004.png", "width": 64, "height": 48}
          ],
          "categories": [
            {"id": 17, "name": "cat", "supercategory": "animal"},
            {"id": 18, "name": "dog", "supercategory": "animal"},
            {"id": 10, "name": "traffic light", "supercategory": "outdoor"}
          ],
          "annotations": [
            {"id": 100, "image_id": 1, "category_id": 17, "bbox": [10.5, 5, 20, 15], "iscrowd": 0, "area": 300, "segmentation": [[10.5, 5, 30.5, 5, 30.5, 20]]},
            {"id": 101, "image_id": 1, "category_id": 18, "bbox": [1, 1, 5, 5], "iscrowd": 0, "area": 25},
            {"id": 102, "image_id": 1, "category_id": 18, "bbox": [40, 20, 10, 10], "iscrowd": 0, "area": 100},
            {"id": 103, "image_id": 1, "category_id": 10, "bbox": [50, 30, 10, 12], "iscrowd": 0, "area": 120},
            {"id": 200, "image_id": 2, "category_id": 17, "bbox": [0, 0, 30, 30], "iscrowd": 1, "area": 900, "segmentation": {"counts": [1, 2], "size": [48, 64]}},
            {"id": 201, "image_id": 2, "category_id": 18, "bbox": [50, 40, 14.0000001, 8.2], "iscrowd": 0, "area": 110},
            {"id": 300, "image_id": 3, "category_id": 17, "bbox": [0, 0, 10, 10], "iscrowd": 0, "area": 100},
            {"id": 301, "image_id": 3, "category_id": 17, "bbox": [20, 20, 5, 5], "iscrowd": 0, "area": 25},
            {"id": 302, "image_id": 3, "category_id": 18, "bbox": [2, 3, 30, 40], "iscrowd": 0, "area": 1200},
            {"id": 400, "image_id": 4, "category_id": 17, "bbox": [1, 1, 5, 5], "iscrowd": 0, "area": 25}
          ]
        }
        """);
    }

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void Keeps_single_non_crowd_instances_of_the_asked_categories()
    {
        string outDir = _tmp.File("out");
        var result = CocoImporter.Import(_instances, _images, outDir, new CocoImportOptions { Categories = ["cat", "Dog"] });

        // img1: one cat (two dogs: out); img2: crowd cat out, one dog; img3: two cats out, one dog; img4: file missing.
        Assert.Equal(["coco-1-cat", "coco-2-dog", "coco-3-dog"], result.Examples.Select(e => e.Id));
        Assert.Equal((4, 1, 0), (result.ImagesScanned, result.MissingImages, result.SmallBoxes));

        var read = ManifestReader.Read(result.ManifestPath);
        Assert.Empty(read.Rejects);
        Assert.Equal(Path.Combine(outDir, "manifest.jsonl"), result.ManifestPath);
        var cat = read.Examples[0];
        Assert.Equal("vqa", cat.Task);
        Assert.Equal("USER: <image>\nWhat is the color of the cat?\nASSISTANT: The color of the cat is", cat.Prompt);
        Assert.Null(cat.Expected);
        Assert.Equal([10.5, 5, 30.5, 20], cat.ObjectBox!);
        Assert.Equal("images/000000000001.png", cat.ImageRelative);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_images, "000000000001.png")), File.ReadAllBytes(cat.ImagePath!));
        using var meta = JsonDocument.Parse(cat.MetadataJson);
        Assert.Equal(1, meta.RootElement.GetProperty("coco_image_id").GetInt64());
        Assert.Equal(100, meta.RootElement.GetProperty("coco_annotation_id").GetInt64());
        Assert.Equal("cat", meta.RootElement.GetProperty("category").GetString());

        Assert.Equal([50, 40, 64, 48], read.Examples[1].ObjectBox!); // clipped to the 64x48 image
        Assert.Equal([2, 3, 32, 43], read.Examples[2].ObjectBox!);
        Assert.Equal(3, Directory.GetFiles(Path.Combine(outDir, "images")).Length);
    }

    [Fact]
    public void All_categories_symlinks_and_box_size_filter()
    {
        string outDir = _tmp.File("all");
        var result = CocoImporter.Import(_instances, _images, outDir, new CocoImportOptions { ImageMode = CocoImageMode.Symlink });
        Assert.Equal(["coco-1-traffic_light", "coco-1-cat", "coco-2-dog", "coco-3-dog"], result.Examples.Select(e => e.Id));
        Assert.Equal("USER: <image>\nWhat is the color of the traffic light?\nASSISTANT: The color of the traffic light is",
            result.Examples[0].Prompt);
        Assert.NotNull(new FileInfo(result.Examples[0].ImagePath!).LinkTarget);
        // Links out of the dataset folder are followed only under a named image root.
        Assert.All(ManifestReader.Read(result.ManifestPath).Rejects, r => Assert.Contains("leads through a symbolic link", r.Reason));
        Assert.Empty(ManifestReader.Read(result.ManifestPath, new ManifestLimits(ImageRoots: [_images])).Rejects);

        var filtered = CocoImporter.Import(_instances, _images, _tmp.File("big"), new CocoImportOptions { MinBoxSide = 12, MaxExamples = 5 });
        Assert.Equal(["coco-1-cat", "coco-3-dog"], filtered.Examples.Select(e => e.Id));
        Assert.Equal(2, filtered.SmallBoxes);

        var capped = CocoImporter.Import(_instances, _images, _tmp.File("cap"), new CocoImportOptions { MaxExamples = 1 });
        Assert.Single(capped.Examples);
    }

    [Fact]
    public void Unknown_category_and_broken_files_give_clear_errors()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            CocoImporter.Import(_instances, _images, _tmp.File("x"), new CocoImportOptions { Categories = ["zebra"] }));
        Assert.Contains("zebra", e.Message);

        string bad = _tmp.File("bad.json");
        File.WriteAllText(bad, "{\"images\": [");
        var d = Assert.Throws<InvalidDataException>(() => CocoImporter.Import(bad, _images, _tmp.File("y")));
        Assert.Contains("bad.json", d.Message);

        var io = Assert.Throws<IOException>(() => CocoImporter.Import(_tmp.File("none.json"), _images, _tmp.File("z")));
        Assert.Contains("none.json", io.Message);
    }
}
