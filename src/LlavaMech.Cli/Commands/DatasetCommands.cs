using LlavaMech.Datasets;

namespace LlavaMech.Cli.Commands;

/// <summary><c>dataset validate | synth-colors | import-coco</c>: the pipeline's input manifests.</summary>
public static class DatasetCommands
{
    public static readonly CommandLine.OptionSpec[] ValidateSpecs =
    [
        new("manifest", "MANIFEST", "manifest.jsonl to check (may also be given as the first argument)", Required: true),
        .. PipelineCommands.JobOptionSpecs.Where(s => s.Name is "max-line-bytes" or "image-root"),
    ];

    public const string ValidateDescription = """
        Checks every line of a manifest (JSON Lines, see datasets/README.md) and reports each bad
        line with its number and reason: invalid JSON, missing or duplicate id, unknown task,
        missing image file, a path escaping the dataset folder, a vqa prompt without exactly one
        <image>, a tqa prompt with one, a malformed object_box. Exits 1 if any line is bad. The
        pipeline uses the same reader and puts bad lines in its rejects table instead of failing.
        """;

    public static int Validate(CommandLine cl)
    {
        var (report, code) = ManifestValidator.Validate(cl.Require("manifest"),
            new ManifestLimits(cl.GetLong("max-line-bytes"), cl.GetAll("image-root").Select(Path.GetFullPath).ToList()));
        (code == 0 ? Console.Out : Console.Error).WriteLine(report);
        return code;
    }

    public static readonly CommandLine.OptionSpec[] SynthSpecs =
    [
        new("count", "N", "number of VQA images (and as many TQA questions)", Required: true) { Range = CommandLine.NumericRange.Int(0, 10_000_000) },
        new("seed", "S", "random seed (same seed, same bytes)", "17") { Range = CommandLine.NumericRange.Int(int.MinValue) },
        new("size", "PX", "image side in pixels (84 fits the tiny models, 336 llava-1.5)", "84") { Range = CommandLine.NumericRange.Int(14, 4096) },
        new("tqa", "N", "number of TQA questions (default: --count)") { Range = CommandLine.NumericRange.Int(0, 10_000_000) },
        new("out", "DIR", "output folder (manifest.jsonl, tqa.jsonl, images/)", Required: true),
    ];

    public const string SynthDescription = """
        Generates the synthetic colour world: images with 1-4 shapes in 11 named colours on plain
        backgrounds, one question per image about a shape that is unique in it ("What is the color
        of the circle?"), the colour as `expected` and the object's pixel box as `object_box`; plus
        textual questions about everyday objects with well-known colours (the TQA set). Writes one
        manifest with both tasks (and tqa.jsonl with the TQA part alone).
        """;

    public static int Synth(CommandLine cl)
    {
        int count = cl.GetInt("count"), size = cl.GetInt("size");
        var options = new SynthOptions { ImageSize = size, TextQaCount = cl.Get("tqa") is null ? null : cl.GetInt("tqa") };
        var r = SynthColors.Generate(cl.Require("out"), count, cl.GetInt("seed"), options);
        Console.WriteLine($"wrote {r.ManifestPath}: {r.Examples.Count(e => e.IsVqa)} vqa + {r.Examples.Count(e => !e.IsVqa)} tqa examples");
        return 0;
    }

    public static readonly CommandLine.OptionSpec[] CocoSpecs =
    [
        new("instances", "FILE", "COCO instances json (e.g. annotations/instances_val2017.json)", Required: true),
        new("images", "DIR", "folder of the COCO images", Required: true),
        new("out", "DIR", "output folder (manifest.jsonl, images/)", Required: true),
        new("categories", "LIST", "comma-separated category names to ask about (default: all)"),
        new("max", "N", "stop after N examples") { Range = CommandLine.NumericRange.Int(1) },
        new("symlink", null, "link images instead of copying them (links out of the dataset folder are followed only under an --image-root: run and validate with --image-root IMAGES)"),
    ];

    public const string CocoDescription = """
        Turns COCO annotations into colour questions in the paper's template ("What is the color of
        the {category}?") for images where the category has exactly one (non-crowd) instance, with
        that instance's box as object_box. COCO has no colour labels, so `expected` is absent.
        """;

    public static int Coco(CommandLine cl)
    {
        var options = new CocoImportOptions
        {
            Categories = cl.Get("categories")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            MaxExamples = cl.Get("max") is null ? null : cl.GetInt("max"),
            ImageMode = cl.Flag("symlink") ? CocoImageMode.Symlink : CocoImageMode.Copy,
        };
        var r = CocoImporter.Import(cl.Require("instances"), cl.Require("images"), cl.Require("out"), options);
        Console.WriteLine($"wrote {r.ManifestPath}: {r.Examples.Count} examples from {r.ImagesScanned} images ({r.MissingImages} missing files, {r.SmallBoxes} boxes too small)");
        if (options.ImageMode == CocoImageMode.Symlink)
            Console.WriteLine($"images are symbolic links into {Path.GetFullPath(cl.Require("images"))}: give --image-root {Path.GetFullPath(cl.Require("images"))} to run, submit and dataset validate");
        return 0;
    }
}
