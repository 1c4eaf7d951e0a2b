using System.Text.Json;

namespace LlavaMech.Checkpoints;

/// <summary>
/// config.json -> <see cref="ModelConfig"/>. Hugging Face writes only the values that differ from its
/// class defaults, so every absent key must be filled with the default of the named model_type, and
/// both the transformers-4 and transformers-5 spellings must be read.
/// </summary>
internal static class ConfigReader
{
    public static ModelConfig Parse(string json, string sourcePath)
    {
        using var doc = ParseJson(json, sourcePath);
        var root = doc.RootElement;
        var r = new Reader(sourcePath);
        if (root.ValueKind != JsonValueKind.Object)
            throw r.Fail($"expected a JSON object at the top level, found {root.ValueKind}");

        return DetectKind(root, r) switch
        {
            ModelKind.Llama => ParseLlamaModel(root, r),
            ModelKind.LlavaNext => ParseLlava(root, r, next: true),
            _ => ParseLlava(root, r, next: false),
        };
    }

    private static JsonDocument ParseJson(string json, string sourcePath)
    {
        try { return JsonDocument.Parse(json); }
        catch (JsonException e) { throw new CheckpointException($"config '{sourcePath}' is not valid JSON: {e.Message}", e); }
    }

    /// <summary>
    /// A nested config (<c>text_config</c>, <c>vision_config</c>): parsed by <paramref name="parse"/> when it is an object
    /// of model type <paramref name="modelType"/>; the outer class's own default (<paramref name="whenAbsent"/>) when absent.
    /// </summary>
    private static T SubConfig<T>(JsonElement root, string key, string modelType, string what, Reader r,
        Func<JsonElement, T> parse, Func<T> whenAbsent)
    {
        var el = Prop(root, key);
        if (el is null)
        {
            r.Defaulted.Add(key);
            return whenAbsent();
        }
        if (el.Value.ValueKind != JsonValueKind.Object)
            throw r.Fail($"{key} must be an object, found {el.Value.ValueKind}");
        var type = r.Str(el.Value, key + ".", "model_type", modelType);
        if (type != modelType)
            throw r.Fail($"unsupported {key}.model_type '{type}'; only '{modelType}' {what} are supported");
        return parse(el.Value);
    }

    private static ModelKind DetectKind(JsonElement root, Reader r)
    {
        var modelType = r.Str(root, "", "model_type", null);
        switch (modelType)
        {
            case "llava": return ModelKind.Llava;
            case "llama": return ModelKind.Llama;
            case "llava_next": return ModelKind.LlavaNext;
            case null:
                // Very old configs carry only architectures.
                var arch = Prop(root, "architectures");
                if (arch is { ValueKind: JsonValueKind.Array })
                    foreach (var a in arch.Value.EnumerateArray())
                    {
                        if (a.ValueKind != JsonValueKind.String) continue;
                        if (a.GetString() == "LlavaForConditionalGeneration") return ModelKind.Llava;
                        if (a.GetString() == "LlamaForCausalLM") return ModelKind.Llama;
                        if (a.GetString() == "LlavaNextForConditionalGeneration") return ModelKind.LlavaNext;
                    }
                throw r.Fail("has no model_type (and no architectures entry LlavaForConditionalGeneration, LlavaNextForConditionalGeneration or " +
                             "LlamaForCausalLM); supported model types are 'llava', 'llava_next' and 'llama'");
            default:
                throw r.Fail($"unsupported model_type '{modelType}'; supported model types are 'llava', 'llava_next' and 'llama'");
        }
    }

    private static ModelConfig ParseLlamaModel(JsonElement root, Reader r)
    {
        var text = ParseLlama(root, "", null, r);
        ValidateLlama(text, "", r);
        return new ModelConfig(ModelKind.Llama, text, null, -1, 0, "default", "", false, 0, r.Source) { DefaultedKeys = r.Defaulted };
    }

    private static ModelConfig ParseLlava(JsonElement root, Reader r, bool next)
    {
        // LlavaConfig / LlavaNextConfig build a default LlamaConfig when text_config is absent; a text_config may be
        // llama or mistral (the sub-config's class defaults follow its model_type).
        LlamaConfig text;
        var textEl = Prop(root, "text_config");
        if (textEl is null)
        {
            r.Defaulted.Add("text_config");
            using var empty = JsonDocument.Parse("{}");
            text = ParseLlama(empty.RootElement, "text_config.", root, r);
        }
        else
        {
            if (textEl.Value.ValueKind != JsonValueKind.Object)
                throw r.Fail($"text_config must be an object, found {textEl.Value.ValueKind}");
            var type = r.Str(textEl.Value, "text_config.", "model_type", "llama");
            if (type is not ("llama" or "mistral"))
                throw r.Fail($"unsupported text_config.model_type '{type}'; only 'llama' and 'mistral' text models are supported");
            text = ParseLlama(textEl.Value, "text_config.", root, r, type!);
        }
        ValidateLlama(text, "text_config.", r);

        // LlavaConfig's own fallback when vision_config is absent: CLIP ViT-L/14 at 336 px.
        var vision = SubConfig(root, "vision_config", "clip_vision_model", "vision towers", r,
            v =>
            {
                var clip = ParseClip(v, "vision_config.", r);
                ValidateClip(clip, r);
                return clip;
            },
            () =>
            {
                foreach (var k in new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels", "image_size", "patch_size" })
                    r.Defaulted.Add("vision_config." + k);
                return new ClipVisionConfig(1024, 4096, 24, 16, 3, 336, 14, 1e-5, "quick_gelu");
            });

        // transformers 5 renamed image_token_index to image_token_id.
        int imageToken = r.Has(root, "image_token_index")
            ? r.Int(root, "", "image_token_index", 32000)
            : r.Int(root, "", "image_token_id", 32000);

        var layerEl = Prop(root, "vision_feature_layer");
        int[]? featureLayers = null;
        if (layerEl is { ValueKind: JsonValueKind.Array } && !next)
            throw r.Fail("vision_feature_layer is a list (multi-layer features); only a single layer is supported for llava (llava_next takes a list)");
        if (layerEl is { ValueKind: JsonValueKind.Array } list)
        {
            featureLayers = list.EnumerateArray().Select((e, k) => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var v) ? v
                : throw r.Fail($"vision_feature_layer[{k}] must be an integer, found {e.GetRawText()}")).ToArray();
            if (featureLayers.Length == 0) throw r.Fail("vision_feature_layer is an empty list");
        }
        int featureLayer = featureLayers?[0] ?? r.Int(root, "", "vision_feature_layer", -2);
        var strategy = r.Str(root, "", "vision_feature_select_strategy", "default")!;
        var projAct = r.Str(root, "", "projector_hidden_act", "gelu")!;
        bool projBias = r.Bool(root, "", "multimodal_projector_bias", true);
        // "full" keeps the CLS token next to the patches.
        int seqLen = r.Int(root, "", "image_seq_length", vision.NumPatches + (strategy == "full" ? 1 : 0));

        if (strategy is not ("default" or "full"))
            throw r.Fail($"unknown vision_feature_select_strategy '{strategy}'; expected 'default' or 'full'");
        // hidden_states has the embeddings plus one entry per layer, indexable from either end.
        int n = vision.NumHiddenLayers;
        foreach (var fl in featureLayers ?? [featureLayer])
            if (fl < -(n + 1) || fl > n)
                throw r.Fail($"vision_feature_layer {fl} is out of range for a vision tower of {n} layers " +
                             $"(valid: {-(n + 1)}..{n})");
        // An id at or past vocab_size is legal: transformers swaps image tokens out before the embedding lookup.
        if (imageToken < 0)
            throw r.Fail($"image token id {imageToken} is negative");
        if (seqLen <= 0)
            throw r.Fail($"image_seq_length must be positive, found {seqLen}");

        IReadOnlyList<(int, int)>? pinpoints = null;
        if (next)
        {
            // Strategy "full" keeps CLS, but transformers' pack_image_features assumes p*p rows per tile and fails for every
            // image with tiles (all of them: the smallest pinpoint is one tile); llava-v1.6 checkpoints all use "default".
            if (strategy == "full")
                throw r.Fail("vision_feature_select_strategy 'full' is refused for llava_next: with tiles the class token breaks the packing " +
                             "(transformers' pack_image_features assumes patch_size-grid rows per tile and raises for every image); use 'default'");
            pinpoints = Pinpoints(root, vision.ImageSize, r);
        }

        return new ModelConfig(next ? ModelKind.LlavaNext : ModelKind.Llava, text, vision, imageToken, featureLayer, strategy, projAct, projBias,
            seqLen, r.Source) { DefaultedKeys = r.Defaulted, VisionFeatureLayerList = featureLayers, ImageGridPinpoints = pinpoints };
    }

    /// <summary>LlavaNextConfig's default grid: llava-v1.6's five pinpoints at 336 px.</summary>
    private static readonly (int, int)[] DefaultPinpoints = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

    /// <summary>image_grid_pinpoints: [height, width] pairs, each positive and a multiple of the tile side (vision_config.image_size).</summary>
    private static IReadOnlyList<(int, int)> Pinpoints(JsonElement root, int tile, Reader r)
    {
        var el = Prop(root, "image_grid_pinpoints");
        if (el is null)
        {
            r.Defaulted.Add("image_grid_pinpoints");
            foreach (var (h, w) in DefaultPinpoints)
                if (h % tile != 0 || w % tile != 0)
                    throw r.Fail($"image_grid_pinpoints is absent, and its default [{h}, {w}] is not a multiple of vision_config.image_size {tile}: give the pinpoints");
            return DefaultPinpoints;
        }
        if (el.Value.ValueKind != JsonValueKind.Array || el.Value.GetArrayLength() == 0)
            throw r.Fail($"image_grid_pinpoints must be a non-empty list of [height, width] pairs, found {el.Value.ValueKind}");
        var result = new List<(int, int)>();
        int k = 0;
        foreach (var pair in el.Value.EnumerateArray())
        {
            if (pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2
                || !pair[0].TryGetInt32Safe(out int h) || !pair[1].TryGetInt32Safe(out int w))
                throw r.Fail($"image_grid_pinpoints[{k}] must be a [height, width] pair of integers, found {pair.GetRawText()}");
            if (h <= 0 || w <= 0)
                throw r.Fail($"image_grid_pinpoints[{k}] = [{h}, {w}] must be positive");
            if (h % tile != 0 || w % tile != 0)
                throw r.Fail($"image_grid_pinpoints[{k}] = [{h}, {w}] is not a multiple of the tile side vision_config.image_size = {tile}");
            if ((long)(h / tile) * (w / tile) > 1024)
                throw r.Fail($"image_grid_pinpoints[{k}] = [{h}, {w}] makes {(long)(h / tile) * (w / tile)} tiles of {tile} px, more than 1024");
            result.Add((h, w));
            k++;
        }
        return result;
    }

    /// <param name="outer">The llava top level, whose vocab/token/tie values apply when text_config lacks them.</param>
    private static LlamaConfig ParseLlama(JsonElement o, string p, JsonElement? outer, Reader r, string modelType = "llama")
    {
        bool mistral = modelType == "mistral";
        int Inherit(string key, int dflt) =>
            outer is not null && !r.Has(o, key) && r.Has(outer.Value, key) ? r.Int(outer.Value, "", key, dflt) : r.Int(o, p, key, dflt);

        int vocab = Inherit("vocab_size", 32000);
        int hidden = r.Int(o, p, "hidden_size", 4096);
        int inter = r.Int(o, p, "intermediate_size", mistral ? 14336 : 11008);
        int layers = r.Int(o, p, "num_hidden_layers", 32);
        int heads = r.Int(o, p, "num_attention_heads", 32);
        int kvHeads = r.Int(o, p, "num_key_value_heads", mistral ? 8 : heads);
        if (heads <= 0)
            throw r.Fail($"{p}num_attention_heads must be positive, found {heads}");
        bool explicitHeadDim = r.Has(o, "head_dim");
        if (!explicitHeadDim && hidden % heads != 0)
            throw r.Fail($"{p}hidden_size {hidden} is not divisible by num_attention_heads {heads}");
        int headDim = r.Int(o, p, "head_dim", hidden / heads);

        double ropeTheta = 10000.0;
        if (r.Has(o, "rope_theta"))
            ropeTheta = r.Double(o, p, "rope_theta", ropeTheta);
        var rp = Prop(o, "rope_parameters");
        if (rp is { ValueKind: JsonValueKind.Object } rpo)
        {
            CheckRopeType(rpo, p + "rope_parameters.", r);
            if (!r.Has(o, "rope_theta")) ropeTheta = r.Double(rpo, p + "rope_parameters.", "rope_theta", ropeTheta);
        }
        var rs = Prop(o, "rope_scaling");
        if (rs is { ValueKind: JsonValueKind.Object } rso)
            CheckRopeType(rso, p + "rope_scaling.", r);

        bool tie = r.Has(o, "tie_word_embeddings") || outer is null
            ? r.Bool(o, p, "tie_word_embeddings", false)
            : r.Bool(outer.Value, "", "tie_word_embeddings", false);
        int? pad = r.Has(o, "pad_token_id") || outer is null
            ? r.OptInt(o, p, "pad_token_id")
            : r.OptInt(outer.Value, "", "pad_token_id");

        return new LlamaConfig(
            VocabSize: vocab,
            HiddenSize: hidden,
            IntermediateSize: inter,
            NumHiddenLayers: layers,
            NumAttentionHeads: heads,
            NumKeyValueHeads: kvHeads,
            HeadDim: headDim,
            RmsNormEps: r.Double(o, p, "rms_norm_eps", 1e-6),
            RopeTheta: ropeTheta,
            MaxPositionEmbeddings: r.Int(o, p, "max_position_embeddings", mistral ? 4096 * 32 : 2048),
            AttentionBias: r.Bool(o, p, "attention_bias", false),
            MlpBias: r.Bool(o, p, "mlp_bias", false),
            TieWordEmbeddings: tie,
            HiddenAct: r.Str(o, p, "hidden_act", "silu")!,
            BosTokenId: Inherit("bos_token_id", 1),
            EosTokenId: Inherit("eos_token_id", 2),
            PadTokenId: pad)
        {
            ModelType = modelType,
            // MistralConfig: sliding_window defaults to 4096 (JSON null: plain causal attention); Llama has none.
            SlidingWindow = mistral ? (o.TryGetProperty("sliding_window", out var sw) ? (sw.ValueKind == JsonValueKind.Null ? null : PositiveWindow(r.OptInt(o, p, "sliding_window")!.Value, p, r)) : 4096) : null,
        };
    }

    private static int PositiveWindow(int w, string p, Reader r) =>
        w > 0 ? w : throw r.Fail($"{p}sliding_window must be a positive integer or null, found {w}");

    // Scaled RoPE variants (linear, dynamic, llama3, yarn...) change the numerics; refuse rather than silently diverge.
    private static void CheckRopeType(JsonElement o, string p, Reader r)
    {
        var type = r.Has(o, "rope_type") ? r.Str(o, p, "rope_type", "default") : r.Str(o, p, "type", "default");
        if (type != "default")
            throw r.Fail($"{p}rope_type '{type}' is not supported; only the default (unscaled) rotary embedding is");
    }

    private static ClipVisionConfig ParseClip(JsonElement o, string p, Reader r) => new(
        HiddenSize: r.Int(o, p, "hidden_size", 768),
        IntermediateSize: r.Int(o, p, "intermediate_size", 3072),
        NumHiddenLayers: r.Int(o, p, "num_hidden_layers", 12),
        NumAttentionHeads: r.Int(o, p, "num_attention_heads", 12),
        NumChannels: r.Int(o, p, "num_channels", 3),
        ImageSize: r.Int(o, p, "image_size", 224),
        PatchSize: r.Int(o, p, "patch_size", 32),
        LayerNormEps: r.Double(o, p, "layer_norm_eps", 1e-5),
        HiddenAct: r.Str(o, p, "hidden_act", "quick_gelu")!);

    private static void ValidateLlama(LlamaConfig t, string p, Reader r)
    {
        Positive(r, p, [("vocab_size", t.VocabSize), ("hidden_size", t.HiddenSize), ("intermediate_size", t.IntermediateSize),
            ("num_hidden_layers", t.NumHiddenLayers), ("num_attention_heads", t.NumAttentionHeads), ("num_key_value_heads", t.NumKeyValueHeads),
            ("head_dim", t.HeadDim), ("max_position_embeddings", t.MaxPositionEmbeddings)]);
        if (t.NumAttentionHeads % t.NumKeyValueHeads != 0)
            throw r.Fail($"{p}num_attention_heads {t.NumAttentionHeads} is not divisible by num_key_value_heads {t.NumKeyValueHeads}");
        if (!(t.RmsNormEps > 0))
            throw r.Fail($"{p}rms_norm_eps must be positive, found {t.RmsNormEps}");
        if (!(t.RopeTheta > 0))
            throw r.Fail($"{p}rope_theta must be positive, found {t.RopeTheta}");
    }

    private static void ValidateClip(ClipVisionConfig v, Reader r)
    {
        const string p = "vision_config.";
        Positive(r, p, [("hidden_size", v.HiddenSize), ("intermediate_size", v.IntermediateSize), ("num_hidden_layers", v.NumHiddenLayers),
            ("num_attention_heads", v.NumAttentionHeads), ("num_channels", v.NumChannels), ("image_size", v.ImageSize), ("patch_size", v.PatchSize)]);
        if (v.HiddenSize % v.NumAttentionHeads != 0)
            throw r.Fail($"{p}hidden_size {v.HiddenSize} is not divisible by num_attention_heads {v.NumAttentionHeads}");
        if (v.PatchSize > v.ImageSize)
            throw r.Fail($"{p}patch_size {v.PatchSize} is larger than image_size {v.ImageSize}");
        long side = v.ImageSize / v.PatchSize;
        if (side * side + 1 > int.MaxValue)
            throw r.Fail($"{p}image_size {v.ImageSize} with patch_size {v.PatchSize} gives {side * side} patches, more than a tensor dimension can index");
        if (!(v.LayerNormEps > 0))
            throw r.Fail($"{p}layer_norm_eps must be positive, found {v.LayerNormEps}");
    }

    private static void Positive(Reader r, string prefix, IEnumerable<(string Key, int Value)> values)
    {
        foreach (var (key, value) in values) Positive(r, prefix + key, value);
    }

    private static void Positive(Reader r, string key, int value)
    {
        if (value <= 0) throw r.Fail($"{key} must be positive, found {value}");
    }

    private static JsonElement? Prop(JsonElement o, string key) =>
        o.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    /// <summary>Typed lookups where JSON null means "absent" (Hugging Face writes null for unset ids).</summary>
    private sealed class Reader(string source)
    {
        public string Source { get; } = source;

        public CheckpointException Fail(string detail) => new($"config '{Source}': {detail}");

        /// <summary>Keys (with their prefix, e.g. "text_config.hidden_size") that config.json leaves out, so Hugging Face's default applies.</summary>
        public HashSet<string> Defaulted { get; } = new(StringComparer.Ordinal);

        public bool Has(JsonElement o, string key) => Prop(o, key) is not null;

        public int Int(JsonElement o, string p, string key, int dflt)
        {
            if (OptInt(o, p, key) is { } v) return v;
            Defaulted.Add(p + key);
            return dflt;
        }

        public int? OptInt(JsonElement o, string p, string key)
        {
            if (Prop(o, key) is not { } v) return null;
            // Newer configs may list several eos ids; the first is the one generation stops on by default.
            if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && key.EndsWith("_token_id", StringComparison.Ordinal))
                v = v[0];
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i)) return i;
            throw Fail($"{p}{key} must be an integer, found {Show(v)}");
        }

        public double Double(JsonElement o, string p, string key, double dflt)
        {
            if (Prop(o, key) is not { } v) return dflt;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && double.IsFinite(d)) return d;
            throw Fail($"{p}{key} must be a number, found {Show(v)}");
        }

        public bool Bool(JsonElement o, string p, string key, bool dflt)
        {
            if (Prop(o, key) is not { } v) return dflt;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Fail($"{p}{key} must be true or false, found {Show(v)}"),
            };
        }

        public string? Str(JsonElement o, string p, string key, string? dflt)
        {
            if (Prop(o, key) is not { } v) return dflt;
            if (v.ValueKind == JsonValueKind.String) return v.GetString();
            throw Fail($"{p}{key} must be a string, found {Show(v)}");
        }

        private static string Show(JsonElement v)
        {
            var s = v.GetRawText();
            return s.Length > 40 ? s[..40] + "..." : s;
        }
    }
}

internal static class JsonIntExtensions
{
    /// <summary>An integer element as int (false for other kinds and out-of-range numbers).</summary>
    public static bool TryGetInt32Safe(this JsonElement e, out int value)
    {
        value = 0;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out value);
    }
}
