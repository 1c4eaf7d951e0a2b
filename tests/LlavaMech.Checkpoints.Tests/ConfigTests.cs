using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints.Tests;

public class ConfigTests
{
    private const string Src = "/models/x/config.json";

    [Fact]
    public void TinyLlavaMha_ParsesTransformers5Config()
    {
        var c = ModelConfig.Load(Fixtures.Model("tiny-llava-mha"));

        Assert.Equal(ModelKind.Llava, c.Kind);
        Assert.Equal(new LlamaConfig(602, 64, 176, 4, 4, 4, 16, 1e-5, 10000.0, 1024, false, false, false, "silu", 1, 2, 601), c.Text);
        Assert.Equal(new ClipVisionConfig(64, 128, 3, 4, 3, 84, 14, 1e-5, "quick_gelu"), c.Vision);
        Assert.Equal(6, c.Vision!.PatchesPerSide);
        Assert.Equal(36, c.Vision.NumPatches);
        Assert.Equal(16, c.Vision.HeadDim);
        Assert.Equal(600, c.ImageTokenId);
        Assert.Equal(-2, c.VisionFeatureLayer);
        Assert.Equal("default", c.VisionFeatureSelectStrategy);
        Assert.Equal("gelu", c.ProjectorHiddenAct);
        Assert.True(c.MultimodalProjectorBias);
        Assert.Equal(36, c.ImageSeqLength);
        Assert.Equal(Path.GetFullPath(Fixtures.File("tiny-llava-mha", "config.json")), c.SourcePath);
    }

    [Fact]
    public void TinyLlava336_ParsesSmallVisionAtFullResolution()
    {
        var c = ModelConfig.Load(Fixtures.Model("tiny-llava-336"));
        Assert.Equal(2, c.Text.NumHiddenLayers);
        Assert.Equal(new ClipVisionConfig(32, 64, 3, 2, 3, 336, 14, 1e-5, "quick_gelu"), c.Vision);
        Assert.Equal(576, c.Vision!.NumPatches);
        Assert.Equal(576, c.ImageSeqLength);
    }

    [Fact]
    public void TinyVicuna_IsPlainLlama()
    {
        var c = ModelConfig.Load(Fixtures.Model("tiny-vicuna"));
        Assert.Equal(ModelKind.Llama, c.Kind);
        Assert.Null(c.Vision);
        Assert.Equal(-1, c.ImageTokenId);
        Assert.Equal(0, c.ImageSeqLength);
        Assert.Equal(new LlamaConfig(602, 64, 176, 4, 4, 4, 16, 1e-5, 10000.0, 1024, false, false, false, "silu", 1, 2, 601), c.Text);
    }

    [Theory]
    [InlineData("tiny-llava-mha")]
    [InlineData("tiny-llava-336")]
    [InlineData("tiny-vicuna")]
    public void ParameterCount_EqualsElementsStoredInFixture(string model)
    {
        // The fixtures were saved by transformers, so their tensors are exactly the HF parameters.
        var c = ModelConfig.Load(Fixtures.Model(model));
        using var f = SafetensorsFile.Open(Fixtures.File(model, "model.safetensors"));
        Assert.Equal(f.Tensors.Values.Sum(e => e.NumElements), c.ParameterCount());
        Assert.Equal(f.Tensors.Count, c.ExpectedWeights().Count);
    }

    [Fact]
    public void Llava157b_FillsHuggingFaceDefaults()
    {
        var c = ModelConfig.Load(Fixtures.Model("llava-1.5-7b-hf"));

        Assert.Equal(ModelKind.Llava, c.Kind);
        // Absent from the file: must come from LlamaConfig defaults.
        Assert.Equal(new LlamaConfig(VocabSize: 32064, HiddenSize: 4096, IntermediateSize: 11008, NumHiddenLayers: 32,
            NumAttentionHeads: 32, NumKeyValueHeads: 32, HeadDim: 128, RmsNormEps: 1e-5, RopeTheta: 10000.0,
            MaxPositionEmbeddings: 4096, AttentionBias: false, MlpBias: false, TieWordEmbeddings: false,
            HiddenAct: "silu", BosTokenId: 1, EosTokenId: 2, PadTokenId: 32001), c.Text);
        // Absent from the file: hidden_act, layer_norm_eps, num_channels from CLIPVisionConfig defaults.
        Assert.Equal(new ClipVisionConfig(1024, 4096, 24, 16, 3, 336, 14, 1e-5, "quick_gelu"), c.Vision);
        Assert.Equal(577, c.Vision!.NumPositions);
        Assert.Equal(32000, c.ImageTokenId);
        Assert.Equal(-2, c.VisionFeatureLayer);
        Assert.Equal("default", c.VisionFeatureSelectStrategy);
        Assert.Equal("gelu", c.ProjectorHiddenAct);
        Assert.True(c.MultimodalProjectorBias);
        Assert.Equal(576, c.ImageSeqLength);
    }

    [Fact]
    public void Llava157b_ParameterCountAndMemory()
    {
        var c = ModelConfig.Load(Fixtures.Model("llava-1.5-7b-hf"));
        // text 6,738,939,904 + CLIP ViT-L/14-336 303,507,456 + projector 20,979,712
        Assert.Equal(7_063_427_072L, c.ParameterCount());
        Assert.Equal(14_126_854_144L, c.BytesFor(ScalarType.Float16));
        Assert.Equal(14_126_854_144L, c.BytesFor(ScalarType.BFloat16));
        Assert.Equal(28_253_708_288L, c.BytesFor(ScalarType.Float32));
        var w = c.ExpectedWeights();
        Assert.Equal(new long[] { 32064, 4096 }, w["language_model.lm_head.weight"]);
        Assert.Equal(new long[] { 577, 1024 }, w["vision_tower.embeddings.position_embedding.weight"]);
        Assert.Equal(new long[] { 4096, 1024 }, w["multi_modal_projector.linear_1.weight"]);
        Assert.True(w.ContainsKey("vision_tower.post_layernorm.bias"));
    }

    private static string Llava(string top = "", string text = "", string vision = "") => $$"""
        { "model_type": "llava" {{top}},
          "text_config": { "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                           "intermediate_size": 128, "vocab_size": 1000 {{text}} },
          "vision_config": { "hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 3, "image_size": 56,
                             "patch_size": 14, "intermediate_size": 64 {{vision}} } }
        """;

    [Fact]
    public void Transformers4And5KeyStyles_ParseTheSame()
    {
        var t4 = ModelConfig.Parse(Llava(top: ", \"image_token_index\": 999", text: ", \"rope_theta\": 500000.0"), Src);
        var t5 = ModelConfig.Parse(Llava(top: ", \"image_token_id\": 999",
            text: ", \"rope_parameters\": { \"rope_theta\": 500000.0, \"rope_type\": \"default\" }"), Src);

        Assert.Equal(t4, t5);
        Assert.Equal(999, t5.ImageTokenId);
        Assert.Equal(500000.0, t5.Text.RopeTheta);
    }

    [Fact]
    public void SmallConfig_AppliesDerivedDefaults()
    {
        var c = ModelConfig.Parse(Llava(top: ", \"image_token_index\": 5"), Src);
        Assert.Equal(4, c.Text.NumKeyValueHeads);  // defaults to num_attention_heads
        Assert.Equal(16, c.Text.HeadDim);          // hidden / heads
        Assert.Equal(1e-6, c.Text.RmsNormEps);
        Assert.Equal(2048, c.Text.MaxPositionEmbeddings);
        Assert.Null(c.Text.PadTokenId);
        Assert.Equal("quick_gelu", c.Vision!.HiddenAct);
        Assert.Equal(3, c.Vision.NumChannels);
    }

    [Fact]
    public void ImageTokenPastVocab_IsAccepted()
    {
        // transformers masks image tokens before the embedding lookup, so the default 32000 may exceed vocab 1000.
        var c = ModelConfig.Parse(Llava(), Src);
        Assert.Equal(32000, c.ImageTokenId);
        var e = Assert.Throws<CheckpointException>(() => ModelConfig.Parse(Llava(top: ", \"image_token_id\": -3"), Src));
        Assert.Equal($"config '{Src}': image token id -3 is negative", e.Message);
    }

    [Fact]
    public void FullStrategy_CountsClsToken_UnlessConfigSaysOtherwise()
    {
        var full = ModelConfig.Parse(Llava(top: ", \"image_token_index\": 5, \"vision_feature_select_strategy\": \"full\""), Src);
        Assert.Equal(17, full.ImageSeqLength); // 4x4 patches + CLS
        var told = ModelConfig.Parse(Llava(top: ", \"image_token_index\": 5, \"image_seq_length\": 20"), Src);
        Assert.Equal(20, told.ImageSeqLength);
    }

    [Fact]
    public void TopLevelVocab_UsedOnlyWhenTextConfigLacksIt()
    {
        var json = """{ "model_type": "llava", "vocab_size": 32064, "pad_token_id": 32001, "text_config": { "num_hidden_layers": 2 } }""";
        var c = ModelConfig.Parse(json, Src);
        Assert.Equal(32064, c.Text.VocabSize);
        Assert.Equal(32001, c.Text.PadTokenId);
        Assert.Equal(4096, c.Text.HiddenSize);
        // LlavaConfig's fallback vision tower when vision_config is absent.
        Assert.Equal(new ClipVisionConfig(1024, 4096, 24, 16, 3, 336, 14, 1e-5, "quick_gelu"), c.Vision);

        var inner = ModelConfig.Parse(Llava(top: ", \"vocab_size\": 5000, \"image_token_index\": 5"), Src);
        Assert.Equal(1000, inner.Text.VocabSize);
    }

    [Fact]
    public void TiedEmbeddings_DropLmHeadFromWeightsAndCount()
    {
        var untied = ModelConfig.Parse(Llava(top: ", \"image_token_index\": 5"), Src);
        var tied = ModelConfig.Parse(Llava(top: ", \"image_token_index\": 5", text: ", \"tie_word_embeddings\": true"), Src);
        Assert.True(tied.Text.TieWordEmbeddings);
        Assert.False(tied.ExpectedWeights().ContainsKey("language_model.lm_head.weight"));
        Assert.Equal(untied.ParameterCount() - 1000 * 64, tied.ParameterCount());
    }

    [Fact]
    public void GqaAndBiases_ShapeTheExpectedWeights()
    {
        var c = ModelConfig.Parse("""
            { "model_type": "llama", "hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2,
              "num_hidden_layers": 1, "intermediate_size": 96, "vocab_size": 50, "attention_bias": true, "mlp_bias": true }
            """, Src);
        var w = c.ExpectedWeights();
        Assert.Equal(new long[] { 16, 64 }, w["model.layers.0.self_attn.k_proj.weight"]);
        Assert.Equal(new long[] { 16 }, w["model.layers.0.self_attn.v_proj.bias"]);
        Assert.Equal(new long[] { 96 }, w["model.layers.0.mlp.up_proj.bias"]);
        Assert.Equal(new long[] { 50, 64 }, w["lm_head.weight"]);
    }

    [Fact]
    public void TokenIds_NullIsAbsent_ListTakesFirst()
    {
        var c = ModelConfig.Parse("""{ "model_type": "llama", "pad_token_id": null, "bos_token_id": 128000, "eos_token_id": [128001, 128009] }""", Src);
        Assert.Null(c.Text.PadTokenId);
        Assert.Equal(128000, c.Text.BosTokenId);
        Assert.Equal(128001, c.Text.EosTokenId);
    }

    [Fact]
    public void ArchitecturesOnly_SelectsLlama()
    {
        var c = ModelConfig.Parse("""{ "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1 }""", Src);
        Assert.Equal(ModelKind.Llama, c.Kind);
        Assert.Equal(32000, c.Text.VocabSize);
        Assert.Equal(11008, c.Text.IntermediateSize);
    }

    [Theory]
    [InlineData("{ \"model_type\": \"llava\", ", "is not valid JSON")]
    [InlineData("[1, 2]", "expected a JSON object at the top level, found Array")]
    [InlineData("""{ "model_type": "qwen2_vl" }""", "unsupported model_type 'qwen2_vl'; supported model types are 'llava', 'llava_next' and 'llama'")]
    [InlineData("""{ "model_type": "llava", "text_config": { "model_type": "qwen2" } }""", "unsupported text_config.model_type 'qwen2'")]
    [InlineData("""{ "model_type": "llava_next", "vision_feature_select_strategy": "full" }""", "vision_feature_select_strategy 'full' is refused for llava_next")]
    [InlineData("""{ "model_type": "llava_next", "image_grid_pinpoints": [[336, 672], [700, 336]] }""", "image_grid_pinpoints[1] = [700, 336] is not a multiple of the tile side vision_config.image_size = 336")]
    [InlineData("""{ "model_type": "llava_next", "image_grid_pinpoints": [[336]] }""", "image_grid_pinpoints[0] must be a [height, width] pair")]
    [InlineData("""{ "model_type": "llava_next", "vision_feature_layer": [-2, 30] }""", "vision_feature_layer 30 is out of range")]
    [InlineData("""{ "model_type": "llava_next", "text_config": { "model_type": "mistral", "sliding_window": 0 } }""", "text_config.sliding_window must be a positive integer or null")]
    [InlineData("""{ "model_type": "llava", "vision_config": { "model_type": "siglip_vision_model" } }""", "unsupported vision_config.model_type 'siglip_vision_model'")]
    [InlineData("""{ "vocab_size": 10 }""", "has no model_type")]
    [InlineData("""{ "model_type": "llama", "hidden_size": 0 }""", "hidden_size must be positive, found 0")]
    [InlineData("""{ "model_type": "llama", "num_hidden_layers": -1 }""", "num_hidden_layers must be positive, found -1")]
    [InlineData("""{ "model_type": "llama", "hidden_size": 100, "num_attention_heads": 3 }""", "hidden_size 100 is not divisible by num_attention_heads 3")]
    [InlineData("""{ "model_type": "llama", "num_key_value_heads": 5 }""", "num_attention_heads 32 is not divisible by num_key_value_heads 5")]
    [InlineData("""{ "model_type": "llama", "hidden_size": "big" }""", "hidden_size must be an integer, found \"big\"")]
    [InlineData("""{ "model_type": "llama", "rope_scaling": { "rope_type": "llama3", "factor": 8.0 } }""", "rope_scaling.rope_type 'llama3' is not supported")]
    [InlineData("""{ "model_type": "llava", "text_config": { "intermediate_size": 0 } }""", "text_config.intermediate_size must be positive, found 0")]
    [InlineData("""{ "model_type": "llava", "vision_config": { "patch_size": 0 } }""", "vision_config.patch_size must be positive, found 0")]
    [InlineData("""{ "model_type": "llava", "vision_config": { "hidden_size": 100, "num_attention_heads": 16 } }""", "vision_config.hidden_size 100 is not divisible by num_attention_heads 16")]
    [InlineData("""{ "model_type": "llava", "vision_feature_select_strategy": "cls" }""", "unknown vision_feature_select_strategy 'cls'; expected 'default' or 'full'")]
    [InlineData("""{ "model_type": "llava", "vision_feature_layer": 25 }""", "vision_feature_layer 25 is out of range for a vision tower of 24 layers (valid: -25..24)")]
    [InlineData("""{ "model_type": "llava", "vision_feature_layer": -26 }""", "vision_feature_layer -26 is out of range")]
    [InlineData("""{ "model_type": "llava", "vision_feature_layer": [-2, -5] }""", "vision_feature_layer is a list")]
    public void BadConfig_IsRejectedNamingFile(string json, string expected)
    {
        var e = Assert.Throws<CheckpointException>(() => ModelConfig.Parse(json, Src));
        Assert.StartsWith($"config '{Src}'", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MissingConfigFile_NamesPath()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<CheckpointException>(() => ModelConfig.Load(tmp.Path));
        Assert.Equal($"config '{tmp.File("config.json")}' does not exist", e.Message);
    }

    [Fact]
    public void BadConfigFile_MessageNamesLoadedPath()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("config.json"), """{ "model_type": "llava", "vision_feature_select_strategy": "x" }""");
        var e = Assert.Throws<CheckpointException>(() => ModelConfig.Load(tmp.Path));
        Assert.Equal($"config '{tmp.File("config.json")}': unknown vision_feature_select_strategy 'x'; expected 'default' or 'full'", e.Message);
    }

    [Fact]
    public void Llava_next_reads_pinpoints_feature_layer_lists_and_mistral_defaults()
    {
        var c = ModelConfig.Parse("""{ "model_type": "llava_next", "vision_feature_layer": [-2, -5], "text_config": { "model_type": "mistral", "rope_theta": 1000000.0, "sliding_window": null } }""", Src);
        Assert.Equal(ModelKind.LlavaNext, c.Kind);
        Assert.True(c.IsVision);
        Assert.Equal([-2, -5], c.FeatureLayers);
        Assert.Equal([(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)], c.ImageGridPinpoints!);
        Assert.Equal("mistral", c.Text.ModelType);
        Assert.Null(c.Text.SlidingWindow);
        Assert.Equal(1e6, c.Text.RopeTheta);
        Assert.Equal(8, c.Text.NumKeyValueHeads);      // MistralConfig defaults
        Assert.Equal(14336, c.Text.IntermediateSize);
        Assert.Equal(128, c.Text.HeadDim);
        Assert.Equal([4096L, 2048], c.ExpectedWeights()["multi_modal_projector.linear_1.weight"]);
        Assert.Equal([4096L], c.ExpectedWeights()["image_newline"]);

        var d = ModelConfig.Parse("""{ "model_type": "llava_next", "text_config": { "model_type": "mistral" } }""", Src);
        Assert.Equal(4096, d.Text.SlidingWindow);       // absent: MistralConfig's default
        Assert.Equal(1e-6, d.Text.RmsNormEps);
        var l = ModelConfig.Parse("""{ "model_type": "llava_next" }""", Src);
        Assert.Null(l.Text.SlidingWindow);             // llama: none
        Assert.Equal("llama", l.Text.ModelType);
    }
}
