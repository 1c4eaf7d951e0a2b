using System.Text.Json;

namespace LlavaMech.Cli.Commands;

/// <summary><c>findings</c>: the paper's mechanism findings measured on a dataset whose object locations are known.</summary>
public sealed class FindingsCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("model", "DIR", "LLaVA checkpoint folder", Required: true),
        new("dataset", "MANIFEST", "manifest with VQA examples that have object_box (and ideally expected)", Required: true),
        new("out", "DIR", "output folder (findings.md, findings.json, heads.png, layers.png, binding/)", Required: true),
        new("limit", "N", "at most N examples (0 = all)", "0") { Range = CommandLine.NumericRange.Int(0) },
        new("target", "MODE", "expected (the manifest's answer token) or argmax", "expected"),
        .. DeviceOptions.Specs,
    ];

    public static string Description { get; } = """
        For every VQA example with an object box: accuracy, which layers (attention vs FFN) and which
        heads raise the answer's log-probability, whether the logit lens of the visual tokens at the
        object's patches already ranks the answer (colour) word highly compared with the other
        patches, and whether the answer-carrying (top) head attends to the object more than its area
        alone would give. Reports means over the dataset. Where the manifest lists the scene's objects
        (the colour world's generators do), the binding errors: wrong answers that name the colour of
        another object in the scene, with how much of the top head's attention and log-increase map
        fell on the asked object and on the named one, and a figure of each (binding/<id>.png).
        """;

    public static string Examples { get; } = "  ./llavamech findings --model datasets/shapes-colors-mini/toy-llava --dataset datasets/shapes-colors-mini/manifest.jsonl --out out/findings";

    public static int Run(CommandLine cl)
    {
        var options = DeviceOptions.Apply(cl);
        var manifest = ManifestReader.Read(cl.Require("dataset"));
        var examples = manifest.Examples.Where(e => e.IsVqa && e.ObjectBox is not null).ToList();
        int limit = cl.GetInt("limit");
        if (limit > 0) examples = examples.Take(limit).ToList();
        if (examples.Count == 0) throw new UsageException("the manifest has no VQA example with an object_box");
        bool useExpected = cl.Require("target") switch { "expected" => true, "argmax" => false, var m => throw new UsageException($"--target {m}: use expected or argmax") };
        using var model = LoadedModel.Load(cl.Require("model"), options);
        var progress = new ProgressBar("findings", examples.Count);
        var outDir = cl.Require("out");
        var results = FindingsStudy.Run(model, examples, useExpected, progress, Path.Combine(outDir, "binding"));
        progress.Done();
        var md = FindingsStudy.Write(results, model.Directory, cl.Require("dataset"), cl.Require("target"), outDir);
        File.WriteAllText(Path.Combine(outDir, "findings.json"), JsonSerializer.Serialize(results, Json.Indented));
        Console.WriteLine(md);
        Console.WriteLine($"wrote {outDir}/findings.md, findings.json, layers.png, heads.png");
        return 0;
    }
}
