using System.Text.Json;
using LlavaMech.Checkpoints;
using static TorchSharp.torch;

namespace LlavaMech.Cli.Commands;

/// <summary><c>inspect</c>: what a checkpoint is and what it needs, from config.json and the safetensors headers only.</summary>
public static class InspectCommand
{
    public static readonly CommandLine.OptionSpec[] Specs =
    [
        new("model", "DIR", "checkpoint folder (config.json; weights optional)", Required: true),
        new("json", null, "print JSON"),
    ];

    public const string Description = """
        Parses config.json with Hugging Face's defaults for omitted fields and reports the
        architecture, the exact parameter count and the memory the weights need in each dtype,
        without allocating them. When safetensors files are present, their headers are validated
        (offsets, sizes, dtypes) and checked against the expected weight names and shapes.
        """;

    public const string Examples = """
          ./llavamech inspect --model tests/fixtures/llava-1.5-7b-hf
          ./llavamech inspect --model tests/fixtures/tiny-llava-336 --json
        """;

    public static int Run(CommandLine cl)
    {
        var dir = cl.Require("model");
        var c = ModelConfig.Load(dir);
        var t = c.Text;
        string? weights = null;
        int tensors = 0;
        if (File.Exists(Path.Combine(dir, "model.safetensors")) || File.Exists(Path.Combine(dir, "model.safetensors.index.json")))
        {
            using var ckpt = Checkpoint.Open(dir);
            ConfigWeightsCheck.Validate(c, ckpt);
            tensors = ckpt.Tensors.Count;
            weights = string.Join(", ", ckpt.Tensors.Values.GroupBy(e => e.DType).Select(g => $"{g.Count()} x {g.Key}"));
        }
        var info = new
        {
            model = dir,
            kind = c.Kind.ToString(),
            decoder_layers = t.NumHiddenLayers,
            heads = t.NumAttentionHeads,
            kv_heads = t.NumKeyValueHeads,
            head_dim = t.HeadDim,
            hidden = t.HiddenSize,
            intermediate = t.IntermediateSize,
            vocab = t.VocabSize,
            vision_layers = c.Vision?.NumHiddenLayers,
            vision_hidden = c.Vision?.HiddenSize,
            image_size = c.Vision?.ImageSize,
            patch_size = c.Vision?.PatchSize,
            image_tokens = c.Kind == ModelKind.Llava ? c.ImageSeqLength : (int?)null,
            feature_layer = c.Kind == ModelKind.Llava ? c.VisionFeatureLayer : (int?)null,
            strategy = c.Kind == ModelKind.Llava ? c.VisionFeatureSelectStrategy : null,
            parameters = c.ParameterCount(),
            bytes_float32 = c.BytesFor(ScalarType.Float32),
            bytes_float16 = c.BytesFor(ScalarType.Float16),
            weights_checked = weights is not null,
            weight_tensors = tensors,
            weight_dtypes = weights,
        };
        if (cl.Flag("json")) { Console.WriteLine(Json.Serialize(info, indented: true)); return 0; }
        Console.WriteLine($"model          {dir} ({c.Kind})");
        Console.WriteLine($"language       {t.NumHiddenLayers} layers x {t.NumAttentionHeads} heads ({t.NumKeyValueHeads} kv) x {t.HeadDim}, hidden {t.HiddenSize}, MLP {t.IntermediateSize}, vocab {t.VocabSize}");
        if (c.Vision is { } v)
            Console.WriteLine($"vision         CLIP {v.NumHiddenLayers} layers x {v.HiddenSize}, {v.ImageSize} px / {v.PatchSize} px patches, feature layer {c.VisionFeatureLayer}, {c.VisionFeatureSelectStrategy}: {c.ImageSeqLength} image tokens");
        Console.WriteLine($"parameters     {c.ParameterCount():N0} ({c.ParameterCount() / 1e9:0.00} B)");
        Console.WriteLine($"weight memory  {info.bytes_float16 / 1e9:0.00} GB in float16/bfloat16, {info.bytes_float32 / 1e9:0.00} GB in float32");
        Console.WriteLine(weights is null ? "weights        none in the folder (config only)" : $"weights        {tensors} tensors ({weights}), names and shapes match the config");
        return 0;
    }
}
