using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints;

/// <summary>
/// <c>inspect</c>: what a checkpoint is and what it needs, from config.json and the safetensors headers only (the
/// weights are validated against the config when present, never loaded). The properties are the JSON of <c>inspect --json</c>.
/// </summary>
public sealed record CheckpointSummary(
    string Model,
    string Kind,
    int DecoderLayers,
    int Heads,
    int KvHeads,
    int HeadDim,
    int Hidden,
    int Intermediate,
    int Vocab,
    int? VisionLayers,
    int? VisionHidden,
    int? ImageSize,
    int? PatchSize,
    int? ImageTokens,
    int? FeatureLayer,
    string? Strategy,
    long Parameters,
    long BytesFloat32,
    long BytesFloat16,
    bool WeightsChecked,
    int WeightTensors,
    string? WeightDtypes)
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
        bool llava = c.IsVision;
        return new CheckpointSummary(dir, c.Kind.ToString(), t.NumHiddenLayers, t.NumAttentionHeads, t.NumKeyValueHeads, t.HeadDim, t.HiddenSize,
            t.IntermediateSize, t.VocabSize, c.Vision?.NumHiddenLayers, c.Vision?.HiddenSize, c.Vision?.ImageSize, c.Vision?.PatchSize,
            llava ? c.ImageSeqLength : null, llava ? c.VisionFeatureLayer : null, llava ? c.VisionFeatureSelectStrategy : null,
            c.ParameterCount(), c.BytesFor(ScalarType.Float32), c.BytesFor(ScalarType.Float16), weights is not null, tensors, weights) { Config = c };
    }
}
