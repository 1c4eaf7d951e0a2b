using TorchSharp;

namespace LlavaMech.Checkpoints;

/// <summary>The text model (Hugging Face LlamaConfig), with every default already applied.</summary>
public sealed record LlamaConfig(int VocabSize, int HiddenSize, int IntermediateSize, int NumHiddenLayers,
    int NumAttentionHeads, int NumKeyValueHeads, int HeadDim, double RmsNormEps, double RopeTheta,
    int MaxPositionEmbeddings, bool AttentionBias, bool MlpBias, bool TieWordEmbeddings, string HiddenAct,
    int BosTokenId, int EosTokenId, int? PadTokenId)
{
    /// <summary>text_config.model_type: "llama" or "mistral" (same block math; Mistral adds the sliding window).</summary>
    public string ModelType { get; init; } = "llama";

    /// <summary>Mistral's sliding_window W: query i sees key j only when j &lt;= i and i - j &lt; W; null: plain causal attention.</summary>
    public int? SlidingWindow { get; init; }
}

/// <summary>The vision tower (Hugging Face CLIPVisionConfig), with every default already applied.</summary>
public sealed record ClipVisionConfig(int HiddenSize, int IntermediateSize, int NumHiddenLayers, int NumAttentionHeads,
    int NumChannels, int ImageSize, int PatchSize, double LayerNormEps, string HiddenAct)
{
    public int PatchesPerSide => ImageSize / PatchSize;
    public int NumPatches => PatchesPerSide * PatchesPerSide;
    public int HeadDim => HiddenSize / NumAttentionHeads;
    /// <summary>Patches plus the class token: the rows of the position embedding.</summary>
    public int NumPositions => NumPatches + 1;
}

/// <summary>The parsed configuration's family: LLaVA-1.5 (<c>llava</c>), plain Llama (<c>llama</c>), LLaVA-NeXT (<c>llava_next</c>).</summary>
public enum ModelKind { Llava, Llama, LlavaNext }

/// <summary>
/// Everything the model code needs from config.json. For <see cref="ModelKind.Llama"/> the llava-only
/// members are neutral: Vision null, ImageTokenId -1, ImageSeqLength 0.
/// </summary>
public sealed record ModelConfig(ModelKind Kind, LlamaConfig Text, ClipVisionConfig? Vision, int ImageTokenId,
    int VisionFeatureLayer, string VisionFeatureSelectStrategy, string ProjectorHiddenAct,
    bool MultimodalProjectorBias, int ImageSeqLength, string SourcePath)
{
    /// <summary>
    /// The integer keys config.json leaves out, so that Hugging Face's default applies ("text_config.hidden_size"), plus
    /// "text_config" / "vision_config" when a whole sub-config is absent; for messages that blame a value on a default.
    /// Not part of equality.
    /// </summary>
    public IReadOnlySet<string> DefaultedKeys { get; init; } = new HashSet<string>();

    /// <summary>Whether the model has a vision tower and a projector (LLaVA-1.5 or LLaVA-NeXT).</summary>
    public bool IsVision => Kind is ModelKind.Llava or ModelKind.LlavaNext;

    /// <summary>vision_feature_layer as a list (several hidden states concatenated along the feature axis); null: the single
    /// <see cref="VisionFeatureLayer"/>.</summary>
    public IReadOnlyList<int>? VisionFeatureLayerList { get; init; }

    /// <summary>The vision hidden states the projector reads, in order (one entry for an integer vision_feature_layer).</summary>
    public IReadOnlyList<int> FeatureLayers => VisionFeatureLayerList ?? [VisionFeatureLayer];

    /// <summary>LLaVA-NeXT's image_grid_pinpoints, (height, width) each; null for other families.</summary>
    public IReadOnlyList<(int Height, int Width)>? ImageGridPinpoints { get; init; }

    /// <summary>"N image tokens" (a fixed count), or for LLaVA-NeXT how its count follows the image: "anyres: N base tokens + the unpadded
    /// grid of 336 px tiles + one newline per row; pinpoints (h x w) 336x672, ...".</summary>
    public string DescribeImageTokens()
    {
        if (ImageGridPinpoints is not { } pins || Vision is not { } v) return $"{ImageSeqLength} image tokens";
        return $"anyres: {v.NumPatches} base tokens + the unpadded grid of {v.ImageSize} px tiles + one newline per row; " +
               $"pinpoints (h x w) {string.Join(", ", pins.Select(p => $"{p.Height}x{p.Width}"))}";
    }

    /// <summary>"llama", or "mistral, sliding window 4096" / "mistral, no sliding window".</summary>
    public string DescribeTextModel() => Text.ModelType != "mistral" ? Text.ModelType
        : $"mistral, {(Text.SlidingWindow is int w ? $"sliding window {w}" : "no sliding window")}, rope_theta {Text.RopeTheta:G}";

    /// <summary>"text_config.hidden_size = 4096", with a note when the value is Hugging Face's default rather than config.json's.</summary>
    public string Describe(string key, long value)
    {
        if (!DefaultedKeys.Contains(key)) return $"{key} = {value}";
        int dot = key.IndexOf('.');
        string section = dot > 0 ? key[..dot] : "";
        return DefaultedKeys.Contains(section)
            ? $"{key} = {value} (Hugging Face's default: config.json has no {section})"
            : $"{key} = {value} (Hugging Face's default: config.json does not set it)";
    }

    /// <summary>The key prefix of the text model's settings: "text_config." for llava, "" for a plain llama config.</summary>
    public string TextKeyPrefix => IsVision ? "text_config." : "";

    public bool Equals(ModelConfig? other) =>
        other is not null && Kind == other.Kind && Text == other.Text && Vision == other.Vision && ImageTokenId == other.ImageTokenId &&
        VisionFeatureLayer == other.VisionFeatureLayer && VisionFeatureSelectStrategy == other.VisionFeatureSelectStrategy &&
        ProjectorHiddenAct == other.ProjectorHiddenAct && MultimodalProjectorBias == other.MultimodalProjectorBias &&
        ImageSeqLength == other.ImageSeqLength && SourcePath == other.SourcePath &&
        FeatureLayers.SequenceEqual(other.FeatureLayers) &&
        (ImageGridPinpoints ?? []).SequenceEqual(other.ImageGridPinpoints ?? []) && (ImageGridPinpoints is null) == (other.ImageGridPinpoints is null);

    public override int GetHashCode() => HashCode.Combine(Kind, Text, Vision, ImageTokenId, ImageSeqLength, SourcePath);

    /// <summary>Reads modelDir/config.json (a path to the json file itself is accepted too).</summary>
    public static ModelConfig Load(string modelDir)
    {
        var path = File.Exists(modelDir) ? modelDir : System.IO.Path.Combine(modelDir, "config.json");
        path = System.IO.Path.GetFullPath(path);
        if (!File.Exists(path))
            throw new CheckpointException($"config '{path}' does not exist");
        string json;
        try
        {
            json = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"config '{path}' cannot be read: {e.Message}", e);
        }
        return Parse(json, path);
    }

    public static ModelConfig Parse(string json, string sourcePath) => ConfigReader.Parse(json, sourcePath);

    /// <summary>
    /// Canonical weight names (see <see cref="WeightNames"/>) and shapes of the Hugging Face model, in module
    /// order. A tied lm_head is left out, as Hugging Face counts and stores it once.
    /// </summary>
    public IReadOnlyDictionary<string, long[]> ExpectedWeights()
    {
        var w = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var (name, shape) in EnumerateWeights()) w[name] = shape;
        return w;
    }

    /// <summary>The same as <see cref="ExpectedWeights"/>, one at a time (nothing is held: a config-only count of a
    /// huge configuration costs time, not memory).</summary>
    private IEnumerable<(string Name, long[] Shape)> EnumerateWeights()
    {
        if (IsVision)
        {
            var v = Vision!;
            foreach (var x in Clip("vision_tower.", v)) yield return x;
            // The projector maps the CLIP hidden size to the text hidden size through a GELU.
            long th = Text.HiddenSize;
            yield return ("multi_modal_projector.linear_1.weight", [th, (long)v.HiddenSize * FeatureLayers.Count]);
            if (MultimodalProjectorBias) yield return ("multi_modal_projector.linear_1.bias", [th]);
            yield return ("multi_modal_projector.linear_2.weight", [th, th]);
            if (MultimodalProjectorBias) yield return ("multi_modal_projector.linear_2.bias", [th]);
            foreach (var x in Llama("language_model.model.", "language_model.lm_head.weight", Text)) yield return x;
            if (Kind == ModelKind.LlavaNext) yield return ("image_newline", [th]);
        }
        else
        {
            foreach (var x in Llama("model.", "lm_head.weight", Text)) yield return x;
        }
    }

    /// <summary>Exact number of parameters of the Hugging Face model, unused CLIP post_layernorm included.</summary>
    public long ParameterCount()
    {
        long n = 0;
        foreach (var (_, shape) in EnumerateWeights())
            n += Shapes.CheckedNumel(shape) ?? throw new OverflowException("parameter count overflows");
        return n;
    }

    /// <summary>Memory of all parameters stored in <paramref name="dtype"/> (no activations, no KV cache).</summary>
    public long BytesFor(torch.ScalarType dtype) => ParameterCount() * ElementSize(dtype);

    public static long ElementSize(torch.ScalarType dtype) => dtype switch
    {
        torch.ScalarType.Float64 or torch.ScalarType.Int64 or torch.ScalarType.ComplexFloat32 => 8,
        torch.ScalarType.Float32 or torch.ScalarType.Int32 => 4,
        torch.ScalarType.Float16 or torch.ScalarType.BFloat16 or torch.ScalarType.Int16 => 2,
        torch.ScalarType.Int8 or torch.ScalarType.Byte or torch.ScalarType.Bool => 1,
        torch.ScalarType.ComplexFloat64 => 16,
        _ => throw new ArgumentException($"no element size known for {dtype}", nameof(dtype)),
    };

    private static IEnumerable<(string, long[])> Clip(string p, ClipVisionConfig v)
    {
        long h = v.HiddenSize, i = v.IntermediateSize;
        yield return (p + "embeddings.class_embedding", [h]);
        yield return (p + "embeddings.patch_embedding.weight", [h, v.NumChannels, v.PatchSize, v.PatchSize]);
        yield return (p + "embeddings.position_embedding.weight", [v.NumPositions, h]);
        yield return (p + "pre_layrnorm.weight", [h]); // sic: Hugging Face's spelling
        yield return (p + "pre_layrnorm.bias", [h]);
        for (int l = 0; l < v.NumHiddenLayers; l++)
        {
            var q = $"{p}encoder.layers.{l}.";
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                yield return (q + $"self_attn.{proj}.weight", [h, h]);
                yield return (q + $"self_attn.{proj}.bias", [h]);
            }
            yield return (q + "layer_norm1.weight", [h]);
            yield return (q + "layer_norm1.bias", [h]);
            yield return (q + "mlp.fc1.weight", [i, h]);
            yield return (q + "mlp.fc1.bias", [i]);
            yield return (q + "mlp.fc2.weight", [h, i]);
            yield return (q + "mlp.fc2.bias", [h]);
            yield return (q + "layer_norm2.weight", [h]);
            yield return (q + "layer_norm2.bias", [h]);
        }
        // LLaVA never uses it (features come from an inner layer) but the checkpoint carries it.
        yield return (p + "post_layernorm.weight", [h]);
        yield return (p + "post_layernorm.bias", [h]);
    }

    private static IEnumerable<(string, long[])> Llama(string p, string lmHead, LlamaConfig t)
    {
        long h = t.HiddenSize, i = t.IntermediateSize, qd = (long)t.NumAttentionHeads * t.HeadDim,
            kvd = (long)t.NumKeyValueHeads * t.HeadDim;
        yield return (p + "embed_tokens.weight", [t.VocabSize, h]);
        for (int l = 0; l < t.NumHiddenLayers; l++)
        {
            var q = $"{p}layers.{l}.";
            yield return (q + "self_attn.q_proj.weight", [qd, h]);
            if (t.AttentionBias) yield return (q + "self_attn.q_proj.bias", [qd]);
            yield return (q + "self_attn.k_proj.weight", [kvd, h]);
            if (t.AttentionBias) yield return (q + "self_attn.k_proj.bias", [kvd]);
            yield return (q + "self_attn.v_proj.weight", [kvd, h]);
            if (t.AttentionBias) yield return (q + "self_attn.v_proj.bias", [kvd]);
            yield return (q + "self_attn.o_proj.weight", [h, qd]);
            if (t.AttentionBias) yield return (q + "self_attn.o_proj.bias", [h]);
            yield return (q + "mlp.gate_proj.weight", [i, h]);
            if (t.MlpBias) yield return (q + "mlp.gate_proj.bias", [i]);
            yield return (q + "mlp.up_proj.weight", [i, h]);
            if (t.MlpBias) yield return (q + "mlp.up_proj.bias", [i]);
            yield return (q + "mlp.down_proj.weight", [h, i]);
            if (t.MlpBias) yield return (q + "mlp.down_proj.bias", [h]);
            yield return (q + "input_layernorm.weight", [h]);
            yield return (q + "post_attention_layernorm.weight", [h]);
        }
        yield return (p + "norm.weight", [h]);
        if (!t.TieWordEmbeddings) yield return (lmHead, [t.VocabSize, h]);
    }
}
