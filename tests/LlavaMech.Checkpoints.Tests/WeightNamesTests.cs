using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints.Tests;

public class WeightNamesTests
{
    private static readonly ModelConfig Mha = ModelConfig.Load(Fixtures.Model("tiny-llava-mha"));

    [Theory]
    [InlineData("vision_tower.encoder.layers.0.mlp.fc1.weight", WeightLayout.LlavaLegacy, "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight")]
    [InlineData("vision_tower.encoder.layers.0.mlp.fc1.weight", WeightLayout.LlavaFlat, "vision_tower.encoder.layers.0.mlp.fc1.weight")]
    [InlineData("vision_tower.encoder.layers.0.mlp.fc1.weight", WeightLayout.LlavaTransformers5, "model.vision_tower.encoder.layers.0.mlp.fc1.weight")]
    [InlineData("vision_tower.encoder.layers.0.mlp.fc1.weight", WeightLayout.LlavaTransformers5Nested, "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight")]
    [InlineData("multi_modal_projector.linear_1.bias", WeightLayout.LlavaLegacy, "multi_modal_projector.linear_1.bias")]
    [InlineData("multi_modal_projector.linear_1.bias", WeightLayout.LlavaTransformers5, "model.multi_modal_projector.linear_1.bias")]
    [InlineData("language_model.model.norm.weight", WeightLayout.LlavaLegacy, "language_model.model.norm.weight")]
    [InlineData("language_model.model.norm.weight", WeightLayout.LlavaTransformers5, "model.language_model.norm.weight")]
    [InlineData("language_model.lm_head.weight", WeightLayout.LlavaFlat, "language_model.lm_head.weight")]
    [InlineData("language_model.lm_head.weight", WeightLayout.LlavaTransformers5Nested, "lm_head.weight")]
    [InlineData("model.layers.3.self_attn.q_proj.weight", WeightLayout.Llama, "model.layers.3.self_attn.q_proj.weight")]
    [InlineData("lm_head.weight", WeightLayout.Llama, "lm_head.weight")]
    public void ToFile_AndBack(string canonical, WeightLayout layout, string file)
    {
        Assert.Equal(file, WeightNames.ToFile(canonical, layout));
        Assert.Equal(canonical, WeightNames.FromFile(file, layout));
    }

    [Theory]
    [InlineData("model.layers.0.mlp.up_proj.weight", WeightLayout.LlavaFlat)]
    [InlineData("vision_tower.vision_model.embeddings.class_embedding", WeightLayout.LlavaLegacy)]
    [InlineData("language_model.model.norm.weight", WeightLayout.Llama)]
    public void ToFile_RejectsNamesOfAnotherKind(string canonical, WeightLayout layout)
    {
        var e = Assert.Throws<ArgumentException>(() => WeightNames.ToFile(canonical, layout));
        Assert.StartsWith($"'{canonical}' is not a canonical weight name for layout {layout}", e.Message);
    }

    /// <summary>The mha fixture re-keyed into <paramref name="layout"/> by editing the header of a copy.</summary>
    private static string Rekeyed(TempDir tmp, WeightLayout layout)
    {
        var file = tmp.File("model.safetensors");
        File.Copy(Fixtures.File("tiny-llava-mha", "model.safetensors"), file);
        if (layout != WeightLayout.LlavaFlat)
            SafetensorsBytes.EditJson(file, o =>
            {
                foreach (var key in o.Select(p => p.Key).Where(k => k != "__metadata__").ToList())
                {
                    var canonical = WeightNames.FromFile(key, WeightLayout.LlavaFlat)!;
                    var node = o[key]!.DeepClone();
                    o.Remove(key);
                    o[WeightNames.ToFile(canonical, layout)] = node;
                }
            });
        return file;
    }

    [Theory]
    [InlineData(WeightLayout.LlavaLegacy, "vision_tower.vision_model.embeddings.class_embedding")]
    [InlineData(WeightLayout.LlavaFlat, "vision_tower.embeddings.class_embedding")]
    [InlineData(WeightLayout.LlavaTransformers5, "model.vision_tower.embeddings.class_embedding")]
    [InlineData(WeightLayout.LlavaTransformers5Nested, "model.vision_tower.vision_model.embeddings.class_embedding")]
    public void DetectAndBind_EachLlavaLayout(WeightLayout layout, string classEmbeddingKey)
    {
        using var tmp = new TempDir();
        Rekeyed(tmp, layout);
        using var c = Checkpoint.Open(tmp.Path);
        Assert.Contains(classEmbeddingKey, c.Tensors.Keys);

        Assert.Equal(layout, WeightNames.Detect(c.Tensors.Keys, ModelKind.Llava));
        var bound = WeightNames.Bind(c, Mha.ExpectedWeights(), ModelKind.Llava);

        Assert.Equal(98, bound.Count);
        Assert.Equal(classEmbeddingKey, bound["vision_tower.embeddings.class_embedding"]);
        using var orig = Checkpoint.Open(Fixtures.Model("tiny-llava-mha"));
        using var a = orig.Read("language_model.model.layers.2.mlp.up_proj.weight", ScalarType.Float32);
        using var b = c.Read(bound["language_model.model.layers.2.mlp.up_proj.weight"], ScalarType.Float32);
        Assert.True(TensorAssert.Same(a, b));
    }

    [Fact]
    public void DetectAndBind_Llama()
    {
        using var c = Checkpoint.Open(Fixtures.Model("tiny-vicuna"));
        Assert.Equal(WeightLayout.Llama, WeightNames.Detect(c.Tensors.Keys, ModelKind.Llama));
        var bound = WeightNames.Bind(c, ModelConfig.Load(Fixtures.Model("tiny-vicuna")).ExpectedWeights(), ModelKind.Llama);
        Assert.Equal("lm_head.weight", bound["lm_head.weight"]);
        Assert.Equal(39, bound.Count);
    }

    [Fact]
    public void Detect_LlamaWeightsForLlavaConfig_SaysSo()
    {
        using var c = Checkpoint.Open(Fixtures.Model("tiny-vicuna"));
        var e = Assert.Throws<CheckpointException>(() => WeightNames.Bind(c, Mha.ExpectedWeights(), ModelKind.Llava));
        Assert.Equal($"cannot recognise the weight layout of checkpoint '{c.Files[0].Path}' for a LLaVA model: expected " +
                     "language_model.model.* or model.language_model.* with vision_tower.[vision_model.]* or model.vision_tower.[vision_model.]*, " +
                     "but its 39 keys include 'lm_head.weight', 'model.embed_tokens.weight', 'model.layers.0.input_layernorm.weight'; " +
                     "it looks like a plain Llama checkpoint (layout Llama), so config.json and the weights disagree", e.Message);
    }

    [Fact]
    public void Detect_LlavaWeightsForLlamaConfig_SaysSo()
    {
        using var tmp = new TempDir();
        Rekeyed(tmp, WeightLayout.LlavaTransformers5Nested);
        using var c = Checkpoint.Open(tmp.Path);
        // lm_head.weight alone must not make a llava file pass as llama.
        var e = Assert.Throws<CheckpointException>(() => WeightNames.Detect(c.Tensors.Keys, ModelKind.Llama));
        Assert.StartsWith("cannot recognise the weight layout of the checkpoint for a Llama model: expected model.* and lm_head.weight", e.Message);
        Assert.EndsWith("it looks like a LLaVA checkpoint (layout LlavaTransformers5Nested), so config.json and the weights disagree", e.Message);
    }

    [Fact]
    public void Detect_Nothing()
    {
        var e = Assert.Throws<CheckpointException>(() => WeightNames.Detect(["foo.weight"], ModelKind.Llava));
        Assert.EndsWith("but its 1 keys include 'foo.weight'", e.Message);
    }

    [Fact]
    public void Bind_ReportsMissingUnexpectedAndWrongShape()
    {
        using var c = Checkpoint.Open(Fixtures.Model("tiny-llava-mha"));
        var file = c.Files[0].Path;
        var expected = new Dictionary<string, long[]>(Mha.ExpectedWeights());
        expected.Remove("multi_modal_projector.linear_2.bias");                 // file has it: unexpected
        expected["language_model.model.layers.4.input_layernorm.weight"] = [64]; // file lacks it: missing
        expected["language_model.model.embed_tokens.weight"] = [603, 64];        // wrong shape
        expected["vision_tower.embeddings.class_embedding"] = [64, 1];

        var e = Assert.Throws<CheckpointException>(() => WeightNames.Bind(c, expected, ModelKind.Llava));

        Assert.Equal($"""
            checkpoint '{file}' (layout LlavaFlat) does not match the model:
              1 missing weight:
                'language_model.model.layers.4.input_layernorm.weight'
              1 unexpected weight:
                tensor 'multi_modal_projector.linear_2.bias' in file '{file}'
              2 shape mismatches:
                tensor 'vision_tower.embeddings.class_embedding' in file '{file}' has shape [64], expected [64,1]
                tensor 'language_model.model.embed_tokens.weight' in file '{file}' has shape [602,64], expected [603,64]
            """.ReplaceLineEndings("\n"), e.Message);
    }

    [Fact]
    public void Bind_MissingUnderOtherLayout_ShowsFileKey_AndCapsTheList()
    {
        using var tmp = new TempDir();
        Rekeyed(tmp, WeightLayout.LlavaTransformers5);
        using var c = Checkpoint.Open(tmp.Path);
        var expected = new Dictionary<string, long[]>(Mha.ExpectedWeights());
        for (int l = 4; l < 16; l++) expected[$"language_model.model.layers.{l}.input_layernorm.weight"] = [64];

        var e = Assert.Throws<CheckpointException>(() => WeightNames.Bind(c, expected, ModelKind.Llava));

        var lines = e.Message.Split('\n');
        Assert.Equal("  12 missing weights:", lines[1]);
        Assert.Equal("    'language_model.model.layers.4.input_layernorm.weight' (file key 'model.language_model.layers.4.input_layernorm.weight')", lines[2]);
        Assert.Equal("    ... and 2 more", lines[12]);
        Assert.Equal(13, lines.Length);
    }

    [Fact]
    public void Bind_TiedLmHead_AcceptsPresenceAndAbsence()
    {
        using var tmp = new TempDir();
        var expected = new Dictionary<string, long[]>(Mha.ExpectedWeights());
        expected.Remove("language_model.lm_head.weight"); // what a tied config produces

        using (var present = Checkpoint.Open(Fixtures.Model("tiny-llava-mha")))
            Assert.DoesNotContain("language_model.lm_head.weight", WeightNames.Bind(present, expected, ModelKind.Llava).Keys);

        var file = Rekeyed(tmp, WeightLayout.LlavaTransformers5);
        SafetensorsBytes.RemoveTensor(file, "lm_head.weight");
        using var absent = Checkpoint.Open(tmp.Path);
        Assert.Equal(97, WeightNames.Bind(absent, expected, ModelKind.Llava).Count);
    }

    [Fact]
    public void Bind_IgnoresNonParameterBuffers()
    {
        using var tmp = new TempDir();
        var cfg = ModelConfig.Parse("""{ "model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 16, "vocab_size": 10 }""", "mem");
        var tensors = cfg.ExpectedWeights().Select(kv => (kv.Key, zeros(kv.Value))).ToList();
        tensors.Add(("model.layers.0.self_attn.rotary_emb.inv_freq", zeros(2)));
        SafetensorsWriter.Write(tmp.File("model.safetensors"), tensors);

        using var c = Checkpoint.Open(tmp.Path);
        Assert.Equal(cfg.ExpectedWeights().Count, WeightNames.Bind(c, cfg.ExpectedWeights(), ModelKind.Llama).Count);
    }
}
