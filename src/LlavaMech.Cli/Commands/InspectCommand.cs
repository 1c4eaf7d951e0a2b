using CheckpointSummary = LlavaMech.Checkpoints.CheckpointSummary;
using LlavaMech.Checkpoints;

namespace LlavaMech.Cli.Commands;

/// <summary><c>inspect</c>: what a checkpoint is and what it needs, from config.json and the safetensors headers only.</summary>
public sealed class InspectCommand : ICliCommand
{
    public static CommandLine.OptionSpec[] Specs { get; } =
    [
        new("model", "DIR", "checkpoint folder (config.json; weights optional)", Required: true),
        new("json", null, "print JSON"),
    ];

    public static string Description { get; } = """
        Parses config.json with Hugging Face's defaults for omitted fields and reports the
        architecture, the exact parameter count and the memory the weights need in each dtype,
        without allocating them. When safetensors files are present, their headers are validated
        (offsets, sizes, dtypes) and checked against the expected weight names and shapes.
        """;

    public static string Examples { get; } = """
          ./llavamech inspect --model tests/fixtures/llava-1.5-7b-hf
          ./llavamech inspect --model tests/fixtures/tiny-llava-336 --json
        """;

    public static int Run(CommandLine cl)
    {
        var dir = cl.Require("model");
        var info = CheckpointSummary.Inspect(dir);
        var (c, t, weights, tensors) = (info.Config, info.Config.Text, info.WeightDtypes, info.WeightTensors);
        if (cl.Flag("json")) { Console.WriteLine(Json.Serialize(info, indented: true)); return 0; }
        Console.WriteLine($"model          {dir} ({c.Kind})");
        Console.WriteLine($"language       {t.NumHiddenLayers} layers x {t.NumAttentionHeads} heads ({t.NumKeyValueHeads} kv) x {t.HeadDim}, hidden {t.HiddenSize}, MLP {t.IntermediateSize}, vocab {t.VocabSize} ({c.DescribeTextModel()})");
        if (c.Vision is { } v)
            Console.WriteLine($"vision         CLIP {v.NumHiddenLayers} layers x {v.HiddenSize}, {v.ImageSize} px / {v.PatchSize} px patches, feature layer {string.Join(",", c.FeatureLayers)}, {c.VisionFeatureSelectStrategy}: {c.DescribeImageTokens()}");
        Console.WriteLine($"parameters     {c.ParameterCount():N0} ({c.ParameterCount() / 1e9:0.00} B)");
        Console.WriteLine($"weight memory  {info.BytesFloat16 / 1e9:0.00} GB in float16/bfloat16, {info.BytesFloat32 / 1e9:0.00} GB in float32");
        Console.WriteLine(weights is null ? "weights        none in the folder (config only)" : $"weights        {tensors} tensors ({weights}), names and shapes match the config");
        return 0;
    }
}
