namespace LlavaMech.Checkpoints;

/// <summary>
/// config.json against the safetensors headers, before anything is sized from the config: every command that builds a
/// model (forward, explain, findings, bench, the pipeline's workers through <c>LoadedModel.Load</c>), the pipeline's
/// job validation and <c>inspect</c> call <see cref="Validate"/> first. The config alone is not trusted: a
/// <c>hidden_size</c> of 1e9 or a <c>num_hidden_layers</c> of 1e6 would otherwise allocate (or loop) long before the
/// weights are compared, and a config without <c>text_config</c> silently means a 7B Llama.
/// <list type="number">
/// <item>The layout of the weight names, then each size the config sets against the tensor that carries it (hidden
/// size, vocabulary, MLP width, heads x head_dim, the CLIP patch embedding and positions, image_seq_length), and the
/// number of decoder and vision layers against the layer indices in the headers (which must be 0..n-1 without gaps).
/// Each failure names the config key, its value (and whether it is Hugging Face's default) and the tensor and file.
/// After this step every size is bounded by the headers, so the expected names and shapes can be listed.</item>
/// <item>The exact set of names and shapes (<see cref="WeightNames.Bind"/>).</item>
/// <item>Every weight a parameter is read from is stored as floating point (F32, F16, BF16): an integer tensor of the
/// right shape would otherwise be converted to float and load as garbage.</item>
/// </list>
/// Reads headers only; no tensor data.
/// </summary>
public static class ConfigWeightsCheck
{
    private static readonly SafetensorsDType[] FloatDTypes = [SafetensorsDType.F32, SafetensorsDType.F16, SafetensorsDType.BF16];

    /// <summary>Checks <paramref name="config"/> against <paramref name="ckpt"/>; returns canonical name -> file key of every
    /// expected weight. Throws <see cref="CheckpointException"/> naming the config key and the tensor that disagree.</summary>
    public static IReadOnlyDictionary<string, string> Validate(ModelConfig config, Checkpoint ckpt)
    {
        var layout = WeightNames.Detect(ckpt, config.Kind);
        var byCanonical = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
        foreach (var (key, entry) in ckpt.Tensors)
            if (WeightNames.FromFile(key, layout) is { } canonical) byCanonical[canonical] = entry;

        var c = new Checker(config, ckpt, layout, byCanonical);
        var t = config.Text;
        string tp = config.TextKeyPrefix;
        string model = config.IsVision ? "language_model.model." : "model.";
        string lmHead = config.IsVision ? "language_model.lm_head.weight" : "lm_head.weight";

        c.Dim(config.Describe(tp + "hidden_size", t.HiddenSize), t.HiddenSize, model + "embed_tokens.weight", 1);
        c.Dim(config.Describe(tp + "vocab_size", t.VocabSize), t.VocabSize, model + "embed_tokens.weight", 0);
        c.Dim(config.Describe(tp + "vocab_size", t.VocabSize), t.VocabSize, lmHead, 0);
        c.Dim(config.Describe(tp + "hidden_size", t.HiddenSize), t.HiddenSize, model + "norm.weight", 0);
        c.Dim(config.Describe(tp + "intermediate_size", t.IntermediateSize), t.IntermediateSize, model + "layers.0.mlp.down_proj.weight", 1);
        long qd = (long)t.NumAttentionHeads * t.HeadDim, kvd = (long)t.NumKeyValueHeads * t.HeadDim;
        c.Dim($"{tp}num_attention_heads x {tp}head_dim = {t.NumAttentionHeads} x {t.HeadDim} = {qd}", qd, model + "layers.0.self_attn.q_proj.weight", 0);
        c.Dim($"{tp}num_key_value_heads x {tp}head_dim = {t.NumKeyValueHeads} x {t.HeadDim} = {kvd}", kvd, model + "layers.0.self_attn.k_proj.weight", 0);
        c.Layers(config.Describe(tp + "num_hidden_layers", t.NumHiddenLayers), t.NumHiddenLayers, model + "layers.", "decoder layers");

        if (config.IsVision)
        {
            var v = config.Vision!;
            const string vp = "vision_config.", tower = "vision_tower.";
            c.Dim(config.Describe(vp + "hidden_size", v.HiddenSize), v.HiddenSize, tower + "embeddings.patch_embedding.weight", 0);
            c.Dim(config.Describe(vp + "num_channels", v.NumChannels), v.NumChannels, tower + "embeddings.patch_embedding.weight", 1);
            c.Dim(config.Describe(vp + "patch_size", v.PatchSize), v.PatchSize, tower + "embeddings.patch_embedding.weight", 2);
            c.Dim($"{config.Describe(vp + "image_size", v.ImageSize)} with patch_size {v.PatchSize} ({v.NumPatches} patches + the class token = {v.NumPositions} positions)",
                v.NumPositions, tower + "embeddings.position_embedding.weight", 0);
            c.Dim(config.Describe(vp + "intermediate_size", v.IntermediateSize), v.IntermediateSize, tower + "encoder.layers.0.mlp.fc1.weight", 0);
            int nLayers = config.FeatureLayers.Count;
            c.Dim(nLayers == 1 ? config.Describe(vp + "hidden_size", v.HiddenSize)
                    : $"vision_config.hidden_size x {nLayers} vision_feature_layer entries = {(long)v.HiddenSize * nLayers}",
                (long)v.HiddenSize * nLayers, "multi_modal_projector.linear_1.weight", 1);
            c.Dim(config.Describe(tp + "hidden_size", t.HiddenSize), t.HiddenSize, "multi_modal_projector.linear_1.weight", 0);
            c.Layers(config.Describe(vp + "num_hidden_layers", v.NumHiddenLayers), v.NumHiddenLayers, tower + "encoder.layers.", "vision layers");
            // One image token per feature row of the tower; any other count makes every prompt the wrong length.
            // (LLaVA-NeXT's count follows each image's size; its image_seq_length is written but unused.)
            bool full = config.VisionFeatureSelectStrategy == "full";
            int features = v.NumPatches + (full ? 1 : 0);
            if (config.Kind == ModelKind.Llava && config.ImageSeqLength != features)
                throw new CheckpointException(
                    $"config '{config.SourcePath}': {config.Describe("image_seq_length", config.ImageSeqLength)}, but the vision tower gives {features} " +
                    $"image features ({v.NumPatches} patches{(full ? " + the class token" : "")} with strategy '{config.VisionFeatureSelectStrategy}'" +
                    (byCanonical.TryGetValue(tower + "embeddings.position_embedding.weight", out var pos)
                        ? $"; {ckpt.Describe(pos.Name)} has shape {Shapes.Format(pos.Shape)})"
                        : ")"));
        }

        // Every size is now bounded by the headers: the expected set has at most as many entries as the file.
        var bound = WeightNames.Bind(ckpt, config.ExpectedWeights(), config.Kind);
        foreach (var key in bound.Values)
        {
            var e = ckpt.Tensors[key];
            if (Array.IndexOf(FloatDTypes, e.DType) < 0)
                throw new CheckpointException(
                    $"{ckpt.Describe(key)} is stored as {e.DType}, but model weights must be floating point (F32, F16 or BF16)");
        }
        return bound;
    }

    private sealed class Checker(ModelConfig config, Checkpoint ckpt, WeightLayout layout, Dictionary<string, TensorEntry> byCanonical)
    {
        /// <summary>Dimension <paramref name="dim"/> of the tensor <paramref name="canonical"/> must be <paramref name="value"/>.
        /// An absent tensor or one of another rank is left to the name and shape check, which reports it.</summary>
        public void Dim(string setting, long value, string canonical, int dim)
        {
            if (!byCanonical.TryGetValue(canonical, out var e) || e.Shape.Length <= dim || e.Shape[dim] == value) return;
            throw new CheckpointException($"config '{config.SourcePath}': {setting}, but {ckpt.Describe(e.Name)} has shape {Shapes.Format(e.Shape)}");
        }

        /// <summary>The layer indices under <paramref name="prefix"/> must be exactly 0..<paramref name="count"/>-1.</summary>
        public void Layers(string setting, int count, string prefix, string what)
        {
            var seen = new SortedDictionary<long, TensorEntry>();
            foreach (var (canonical, e) in byCanonical)
            {
                if (!canonical.StartsWith(prefix, StringComparison.Ordinal)) continue;
                int dot = canonical.IndexOf('.', prefix.Length);
                if (dot > prefix.Length && long.TryParse(canonical.AsSpan(prefix.Length, dot - prefix.Length), out long index) && index >= 0)
                    seen.TryAdd(index, e);
            }
            string filePrefix = WeightNames.ToFile(prefix, layout);
            string where = $"checkpoint '{ckpt.IndexPath ?? ckpt.Files[0].Path}'";
            if (seen.Count == 0)
            {
                if (count == 0) return;
                throw new CheckpointException($"config '{config.SourcePath}': {setting}, but {where} has no {what} (no '{filePrefix}N.*' tensors)");
            }
            long last = seen.Keys.Last();
            if (seen.Count != last + 1)
            {
                long gap = Enumerable.Range(0, seen.Count + 1).First(i => !seen.ContainsKey(i));
                throw new CheckpointException(
                    $"{where} has {what} up to {last} ({ckpt.Describe(seen[last].Name)}) but none of layer {gap} (no '{filePrefix}{gap}.*' tensors)");
            }
            if (count != seen.Count)
                throw new CheckpointException(
                    $"config '{config.SourcePath}': {setting}, but {where} has {seen.Count} {what} (0..{last}; the last is {ckpt.Describe(seen[last].Name)})");
        }
    }
}
