using TorchSharp;

namespace LlavaMech.Checkpoints;

/// <summary>The text model (Hugging Face LlamaConfig), with every default already applied.</summary>
public sealed record LlamaConfig(int VocabSize, int HiddenSize, int IntermediateSize, int NumHiddenLayers,
    int NumAttentionHeads, int NumKeyValueHeads, int HeadDim, double RmsNormEps, double RopeTheta,
    int MaxPositionEmbeddings, bool AttentionBias, bool MlpBias, bool TieWordEmbeddings, string HiddenAct,
    int BosTokenId, int EosTokenId, int? PadTokenId);

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

public enum ModelKind { Llava, Llama }

/// <summary>
/// Everything the model code needs from config.json. For <see cref="ModelKind.Llama"/> the llava-only
/// members are neutral: Vision null, ImageTokenId -1, ImageSeqLength 0.
/// </summary>
public sealed record ModelConfig(ModelKind Kind, LlamaConfig Text, ClipVisionConfig? Vision, int ImageTokenId,
    int VisionFeatureLayer, string VisionFeatureSelectStrategy, string ProjectorHiddenAct,
    bool MultimodalProjectorBias, int ImageSeqLength, string SourcePath)
{
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
        if (Kind == ModelKind.Llava)
        {
            var v = Vision!;
            AddClip(w, "vision_tower.", v);
            // The projector maps the CLIP hidden size to the text hidden size through a GELU.
            long th = Text.HiddenSize;
            w["multi_modal_projector.linear_1.weight"] = [th, v.HiddenSize];
            if (MultimodalProjectorBias) w["multi_modal_projector.linear_1.bias"] = [th];
            w["multi_modal_projector.linear_2.weight"] = [th, th];
            if (MultimodalProjectorBias) w["multi_modal_projector.linear_2.bias"] = [th];
            AddLlama(w, "language_model.model.", "language_model.lm_head.weight", Text);
        }
        else
        {
            AddLlama(w, "model.", "lm_head.weight", Text);
        }
        return w;
    }

    /// <summary>Exact number of parameters of the Hugging Face model, unused CLIP post_layernorm included.</summary>
    public long ParameterCount()
    {
        long n = 0;
        foreach (var shape in ExpectedWeights().Values)
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

    private static void AddClip(Dictionary<string, long[]> w, string p, ClipVisionConfig v)
    {
        long h = v.HiddenSize, i = v.IntermediateSize;
        w[p + "embeddings.class_embedding"] = [h];
        w[p + "embeddings.patch_embedding.weight"] = [h, v.NumChannels, v.PatchSize, v.PatchSize];
        w[p + "embeddings.position_embedding.weight"] = [v.NumPositions, h];
        w[p + "pre_layrnorm.weight"] = [h]; // sic: Hugging Face's spelling
        w[p + "pre_layrnorm.bias"] = [h];
        for (int l = 0; l < v.NumHiddenLayers; l++)
        {
            var q = $"{p}encoder.layers.{l}.";
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                w[q + $"self_attn.{proj}.weight"] = [h, h];
                w[q + $"self_attn.{proj}.bias"] = [h];
            }
            w[q + "layer_norm1.weight"] = [h];
            w[q + "layer_norm1.bias"] = [h];
            w[q + "mlp.fc1.weight"] = [i, h];
            w[q + "mlp.fc1.bias"] = [i];
            w[q + "mlp.fc2.weight"] = [h, i];
            w[q + "mlp.fc2.bias"] = [h];
            w[q + "layer_norm2.weight"] = [h];
            w[q + "layer_norm2.bias"] = [h];
        }
        // LLaVA never uses it (features come from an inner layer) but the checkpoint carries it.
        w[p + "post_layernorm.weight"] = [h];
        w[p + "post_layernorm.bias"] = [h];
    }

    private static void AddLlama(Dictionary<string, long[]> w, string p, string lmHead, LlamaConfig t)
    {
        long h = t.HiddenSize, i = t.IntermediateSize, qd = (long)t.NumAttentionHeads * t.HeadDim,
            kvd = (long)t.NumKeyValueHeads * t.HeadDim;
        w[p + "embed_tokens.weight"] = [t.VocabSize, h];
        for (int l = 0; l < t.NumHiddenLayers; l++)
        {
            var q = $"{p}layers.{l}.";
            w[q + "self_attn.q_proj.weight"] = [qd, h];
            if (t.AttentionBias) w[q + "self_attn.q_proj.bias"] = [qd];
            w[q + "self_attn.k_proj.weight"] = [kvd, h];
            if (t.AttentionBias) w[q + "self_attn.k_proj.bias"] = [kvd];
            w[q + "self_attn.v_proj.weight"] = [kvd, h];
            if (t.AttentionBias) w[q + "self_attn.v_proj.bias"] = [kvd];
            w[q + "self_attn.o_proj.weight"] = [h, qd];
            if (t.AttentionBias) w[q + "self_attn.o_proj.bias"] = [h];
            w[q + "mlp.gate_proj.weight"] = [i, h];
            if (t.MlpBias) w[q + "mlp.gate_proj.bias"] = [i];
            w[q + "mlp.up_proj.weight"] = [i, h];
            if (t.MlpBias) w[q + "mlp.up_proj.bias"] = [i];
            w[q + "mlp.down_proj.weight"] = [h, i];
            if (t.MlpBias) w[q + "mlp.down_proj.bias"] = [h];
            w[q + "input_layernorm.weight"] = [h];
            w[q + "post_attention_layernorm.weight"] = [h];
        }
        w[p + "norm.weight"] = [h];
        if (!t.TieWordEmbeddings) w[lmHead] = [t.VocabSize, h];
    }
}
