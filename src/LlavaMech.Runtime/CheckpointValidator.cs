using LlavaMech.Checkpoints;
using LlavaMech.Processing;

namespace LlavaMech.Runtime;

/// <summary>What a validated checkpoint is, from its files alone (no weights loaded).</summary>
/// <param name="Kind">"Llava" or "Llama".</param>
public sealed record CheckpointSummary(string ModelDir, string Kind, int Layers, int Heads, int MlpWidth, int Vocab, bool HasVision,
    int ImageTokens, string Fingerprint);

/// <summary>
/// The checks a pipeline job runs before it hands out any shard, so that a broken checkpoint fails the job at once
/// with the reason instead of failing every shard on every worker: config.json (with Hugging Face defaults), the
/// tokenizer, the image processor config (LLaVA), and the safetensors headers against the expected weight names and
/// shapes (what <c>inspect</c> checks). No weights are read.
/// </summary>
public static class CheckpointValidator
{
    /// <summary>Validates the checkpoint and computes its fingerprint. Throws <see cref="CheckpointException"/> or
    /// <see cref="ProcessingException"/> (or an <see cref="IOException"/>) with the reason.</summary>
    public static CheckpointSummary Validate(string modelDir)
    {
        if (string.IsNullOrWhiteSpace(modelDir)) throw new CheckpointException("model directory is empty");
        string dir = Path.GetFullPath(modelDir);
        if (!Directory.Exists(dir)) throw new CheckpointException($"model directory '{dir}' does not exist");
        var config = ModelConfig.Load(dir);
        _ = TokenizerLoader.Load(dir);
        if (config.Kind == ModelKind.LlavaNext) _ = AnyresImageProcessor.FromDirectory(dir, config.ImageGridPinpoints!, config.Vision!.PatchSize);
        else if (config.IsVision) _ = ClipImageProcessor.FromDirectory(dir);
        using (var ckpt = Checkpoint.Open(dir))
            ConfigWeightsCheck.Validate(config, ckpt);
        var t = config.Text;
        return new CheckpointSummary(dir, config.Kind.ToString(), t.NumHiddenLayers, t.NumAttentionHeads, t.IntermediateSize, t.VocabSize,
            config.IsVision, config.Kind == ModelKind.Llava ? config.ImageSeqLength : 0, ModelFingerprint.Compute(dir));
    }
}
