using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints;

/// <summary>
/// <c>inspect</c>: what a checkpoint is and what it needs, from config.json and the safetensors headers only (the
/// weights are validated against the config when present, never loaded). The properties are the JSON of <c>inspect --json</c>.
/// </summary>
public sealed record CheckpointSummary(
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("decoder_layers")] int DecoderLayers,
    [property: JsonPropertyName("heads")] int Heads,
    [property: JsonPropertyName("kv_heads")] int KvHeads,
    [property: JsonPropertyName("head_dim")] int HeadDim,
    [property: JsonPropertyName("hidden")] int Hidden,
    [property: JsonPropertyName("intermediate")] int Intermediate,
    [property: JsonPropertyName("vocab")] int Vocab,
    [property: JsonPropertyName("vision_layers")] int? VisionLayers,
    [property: JsonPropertyName("vision_hidden")] int? VisionHidden,
    [property: JsonPropertyName("image_size")] int? ImageSize,
    [property: JsonPropertyName("patch_size")] int? PatchSize,
    [property: JsonPropertyName("image_tokens")] int? ImageTokens,
    [property: JsonPropertyName("feature_layer")] int? FeatureLayer,
    [property: JsonPropertyName("strategy")] string? Strategy,
    [property: JsonPropertyName("parameters")] long Parameters,
    [property: JsonPropertyName("bytes_float32")] long BytesFloat32,
    [property: JsonPropertyName("bytes_float16")] long BytesFloat16,
    [property: JsonPropertyName("weights_checked")] bool WeightsChecked,
    [property: JsonPropertyName("weight_tensors")] int WeightTensors,
    [property: JsonPropertyName("weight_dtypes")] string? WeightDtypes)
{
    /// <summary>The parsed config (not part of the JSON).</summary>
    [JsonIgnore] public ModelConfig Config { get; init; } = null!;

    /// <summary>Reads <paramref name="dir"/>'s config.json and, when it has safetensors, validates their headers against it.</summary>
    public static CheckpointSummary Inspect(string dir)
    {
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
        bool llava = c.Kind == ModelKind.Llava;
        return new CheckpointSummary(dir, c.Kind.ToString(), t.NumHiddenLayers, t.NumAttentionHeads, t.NumKeyValueHeads, t.HeadDim, t.HiddenSize,
            t.IntermediateSize, t.VocabSize, c.Vision?.NumHiddenLayers, c.Vision?.HiddenSize, c.Vision?.ImageSize, c.Vision?.PatchSize,
            llava ? c.ImageSeqLength : null, llava ? c.VisionFeatureLayer : null, llava ? c.VisionFeatureSelectStrategy : null,
            c.ParameterCount(), c.BytesFor(ScalarType.Float32), c.BytesFor(ScalarType.Float16), weights is not null, tensors, weights) { Config = c };
    }
}
