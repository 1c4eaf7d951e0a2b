using LlavaMech.Checkpoints;
using LlavaMech.Testing;

namespace LlavaMech.Model.Tests;

/// <summary>The family registry: config.json's model_type (or architectures) picks the family that loads a checkpoint.</summary>
public class ModelFamilyTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-families-").FullName;

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [Theory]
    [InlineData("tiny-llava-mha", "llava")]
    [InlineData("tiny-llava-336", "llava")]
    [InlineData("tiny-llava-next-vicuna", "llava_next")]
    [InlineData("llava-1.5-7b-hf", "llava")]
    [InlineData("tiny-vicuna", "llama")]
    public void The_shipped_fixtures_resolve_to_their_family(string fixture, string family)
    {
        Assert.Equal(family, ModelFamilies.Resolve(Fixtures.Model(fixture)).Name);
        Assert.Equal(family, ModelFamilies.Resolve(Path.Combine(Fixtures.Model(fixture), "config.json")).Name);
        Assert.Equal(family, ModelFamilies.Resolve(ModelConfig.Load(Fixtures.Model(fixture))).Name);
    }

    [Theory]
    [InlineData("tiny-llava-mha", true)]
    [InlineData("tiny-vicuna", false)]
    public void A_loaded_model_knows_its_family_and_shapes(string fixture, bool vision)
    {
        IHookedModel m = ModelCache.Get(fixture);
        Assert.Equal(vision ? "llava" : "llama", m.Family.Name);
        Assert.Equal(vision, m.HasVision);
        Assert.Equal(vision ? 2 : 0, m.VisionLayersRun);
        Assert.Equal(m.Config.Text.NumAttentionHeads, m.Heads);
        Assert.Equal(m.Config.Text.HeadDim, m.HeadDim);
        Assert.Equal([m.Heads * (long)m.HeadDim], m.OProj[0].shape.Skip(1).ToArray());
    }

    [Fact]
    public void An_unknown_model_type_fails_naming_the_config_the_type_and_the_known_families()
    {
        var path = Path.Combine(_tmp, "config.json");
        File.WriteAllText(path, """{ "model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"] }""");
        foreach (var act in new Action[] { () => ModelFamilies.Resolve(_tmp), () => LoadedModel.Load(_tmp), () => ModelFamilies.Load(_tmp) })
        {
            var e = Assert.Throws<CheckpointException>(act);
            Assert.Contains(path, e.Message);
            Assert.Contains("model_type 'qwen2_vl'", e.Message);
            Assert.Contains("known families: llava (model_type llava; LlavaForConditionalGeneration), llava_next (model_type llava_next; LlavaNextForConditionalGeneration), llama (model_type llama; LlamaForCausalLM)", e.Message);
        }
    }

    [Fact]
    public void Without_model_type_the_architectures_decide()
    {
        File.WriteAllText(Path.Combine(_tmp, "config.json"), """{ "architectures": ["LlamaForCausalLM"] }""");
        Assert.Same(LlamaFamily.Instance, ModelFamilies.Resolve(_tmp));
        File.WriteAllText(Path.Combine(_tmp, "config.json"), """{ "architectures": ["MistralForCausalLM"] }""");
        var e = Assert.Throws<CheckpointException>(() => ModelFamilies.Resolve(_tmp));
        Assert.Contains("has no model_type and its architectures [MistralForCausalLM]", e.Message);
    }

    [Fact]
    public void The_registry_loads_the_same_model_as_LoadedModel()
    {
        using var viaRegistry = ModelFamilies.Load(Fixtures.Model("tiny-vicuna"));
        var direct = ModelCache.Get("tiny-vicuna");
        Assert.IsType<LoadedModel>(viaRegistry);
        var input = direct.Prepare("The color of the sky is", null);
        using var scope = TorchSharp.torch.NewDisposeScope();
        Assert.Equal(0.0, Close.MaxAbs(direct.Forward(input), viaRegistry.Forward([input])[0, 0]));
    }
}
