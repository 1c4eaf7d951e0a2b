using LlavaMech.Hooks;
using System.Text.Json.Nodes;
using LlavaMech.Checkpoints;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Model.Tests;

/// <summary>
/// The same weights written in every layout, dtype and sharding a Hub checkpoint uses must give
/// the same model; a grouped-query model must equal the multi-head model with repeated KV heads.
/// </summary>
public class CheckpointVariantTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-variants-").FullName;

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private string Rewrite(string fixture, string name, WeightLayout layout, int shards = 1, SafetensorsDType? storeAs = null,
        Func<string, Tensor, Tensor>? transform = null, Action<JsonObject>? editConfig = null) =>
        CheckpointRewrite.Write(_tmp, fixture, name, layout, shards, storeAs, transform, editConfig);


    private static Tensor LastLogits(string dir, string caseModel, string caseId, string dtype = "float32")
    {
        using var g = new Golden(caseModel, caseId);
        using var m = LoadedModel.Load(dir, new ModelLoadOptions("cpu", dtype));
        return m.Forward(m.Prepare(g.Prompt, g.ImagePath)).detach().clone().DetachFromDisposeScope();
    }

    [Theory]
    [InlineData(WeightLayout.LlavaLegacy, 1)]
    [InlineData(WeightLayout.LlavaTransformers5, 1)]
    [InlineData(WeightLayout.LlavaTransformers5Nested, 1)]
    [InlineData(WeightLayout.LlavaLegacy, 3)]
    public void Every_llava_weight_layout_and_sharding_loads_the_same_model(WeightLayout layout, int shards)
    {
        var dir = Rewrite("tiny-llava-mha", $"{layout}-{shards}", layout, shards);
        if (shards > 1) Assert.True(File.Exists(Path.Combine(dir, "model.safetensors.index.json")));
        using var g = new Golden("tiny-llava-mha", "circle");
        using var logits = LastLogits(dir, "tiny-llava-mha", "circle");
        Close.Assert(g["logits_last"], logits, $"logits from the {layout} layout in {shards} shard(s)");
    }

    [Fact]
    public void A_bfloat16_checkpoint_loads_and_keeps_the_target()
    {
        var dir = Rewrite("tiny-llava-mha", "bf16", WeightLayout.LlavaLegacy, 2, SafetensorsDType.BF16);
        using var g = new Golden("tiny-llava-mha", "circle");
        using var logits = LastLogits(dir, "tiny-llava-mha", "circle");
        // bf16 keeps 8 bits of mantissa: weights move by up to 2^-9 relative, logits by a little more.
        Assert.True(Close.MaxAbs(g["logits_last"], logits) < 0.05, $"bf16 logits drift {Close.MaxAbs(g["logits_last"], logits):G3}");
        Assert.Equal(g.TargetId, (int)logits.argmax().item<long>());
    }

    [Fact]
    public void Bfloat16_compute_stays_close_to_float32()
    {
        using var g = new Golden("tiny-llava-mha", "circle");
        using var logits = LastLogits(Fixtures.Model("tiny-llava-mha"), "tiny-llava-mha", "circle", "bfloat16");
        Assert.Equal(ScalarType.Float32, logits.dtype);
        Assert.True(Close.MaxAbs(g["logits_last"], logits) < 0.25, $"bf16 compute drift {Close.MaxAbs(g["logits_last"], logits):G3}");
    }

    [Fact]
    public void A_plain_llama_checkpoint_in_a_llava_layout_is_refused_with_the_reason()
    {
        var dir = Rewrite("tiny-vicuna", "vicuna-as-llava", WeightLayout.Llama,
            editConfig: cfg => { cfg["architectures"] = new JsonArray("LlamaForCausalLM"); });
        // Sanity: the rewritten plain Llama loads.
        using (var m = LoadedModel.Load(dir)) Assert.False(m.HasVision);
        var llavaDir = Rewrite("tiny-llava-mha", "llava-weights-missing", WeightLayout.LlavaLegacy,
            transform: null);
        File.Delete(Path.Combine(llavaDir, "model.safetensors"));
        File.Copy(Path.Combine(dir, "model.safetensors"), Path.Combine(llavaDir, "model.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => LoadedModel.Load(llavaDir));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("missing", e.Message);
    }

    /// <summary>
    /// GQA: average the key/value heads of the MHA fixture in pairs (KV = 2). A model reading the
    /// 2 KV heads with grouped-query attention must equal the 4-head model whose k/v weights repeat
    /// each averaged head twice (what repeat_kv means).
    /// </summary>
    [Fact]
    public void Grouped_query_attention_equals_multi_head_attention_with_repeated_kv_heads()
    {
        const int heads = 4, kv = 2, d = 16;
        Tensor Averaged(Tensor w) => w.view(kv, heads / kv, d, -1).mean([1]).reshape(kv * d, -1);          // [KV*d, D]
        Tensor Repeated(Tensor w) => Averaged(w).view(kv, 1, d, -1).expand(kv, heads / kv, d, -1).reshape(heads * d, -1);
        bool IsKv(string n) => n.StartsWith("language_model.") && (n.EndsWith("k_proj.weight") || n.EndsWith("v_proj.weight"));

        var gqa = Rewrite("tiny-llava-mha", "gqa", WeightLayout.LlavaLegacy,
            transform: (n, t) => IsKv(n) ? Averaged(t) : t,
            editConfig: cfg => cfg["text_config"]!["num_key_value_heads"] = kv);
        var mha = Rewrite("tiny-llava-mha", "mha-repeated", WeightLayout.LlavaLegacy,
            transform: (n, t) => IsKv(n) ? Repeated(t) : t);
        using var a = LastLogits(gqa, "tiny-llava-mha", "circle");
        using var b = LastLogits(mha, "tiny-llava-mha", "circle");
        Close.Assert(b, a, "GQA logits vs MHA with repeated KV heads", atol: 1e-5, rtol: 1e-5);
        using var g = new Golden("tiny-llava-mha", "circle");
        Assert.True(Close.MaxAbs(g["logits_last"], a) > 1e-3, "the averaged model must differ from the original, or the test proves nothing");
    }

    /// <summary>
    /// Interventions under grouped-query attention: head ablation (per query head, on hook_z) and knockout (on the
    /// per-head scores) of the GQA model equal the same edits of the MHA model with repeated KV heads, and change the logits.
    /// </summary>
    [Fact]
    public void Edits_of_a_grouped_query_model_equal_those_of_its_multi_head_equivalent()
    {
        const int heads = 4, kv = 2, d = 16;
        Tensor Averaged(Tensor w) => w.view(kv, heads / kv, d, -1).mean([1]).reshape(kv * d, -1);
        Tensor Repeated(Tensor w) => Averaged(w).view(kv, 1, d, -1).expand(kv, heads / kv, d, -1).reshape(heads * d, -1);
        bool IsKv(string n) => n.StartsWith("language_model.") && (n.EndsWith("k_proj.weight") || n.EndsWith("v_proj.weight"));
        var gqaDir = Rewrite("tiny-llava-mha", "gqa-edit", WeightLayout.LlavaLegacy,
            transform: (n, t) => IsKv(n) ? Averaged(t) : t, editConfig: cfg => cfg["text_config"]!["num_key_value_heads"] = kv);
        var mhaDir = Rewrite("tiny-llava-mha", "mha-edit", WeightLayout.LlavaLegacy, transform: (n, t) => IsKv(n) ? Repeated(t) : t);
        using var g = new Golden("tiny-llava-mha", "circle");
        using var gqa = LoadedModel.Load(gqaDir);
        using var mha = LoadedModel.Load(mhaDir);
        using var scope = NewDisposeScope();
        HookEdits Edits(LoadedModel m) => new HookEdits().AblateHeads([(1, 1), (2, 3)], HeadAblation.Zero)
            .Knockout(Enumerable.Range(0, m.Layers), PositionGroup.Last, PositionGroup.Image);
        var a = gqa.Forward(gqa.Prepare(g.Prompt, g.ImagePath), Edits(gqa));
        var b = mha.Forward(mha.Prepare(g.Prompt, g.ImagePath), Edits(mha));
        Close.Assert(b, a, "edited GQA logits vs edited MHA with repeated KV heads", atol: 1e-5, rtol: 1e-5);
        var clean = gqa.Forward(gqa.Prepare(g.Prompt, g.ImagePath));
        Assert.True(Close.MaxAbs(clean, a) > 1e-3, "the edits must change the logits, or the test proves nothing");
    }

    [Fact]
    public void A_full_strategy_model_gets_one_more_image_token_including_cls()
    {
        var dir = Rewrite("tiny-llava-mha", "full", WeightLayout.LlavaLegacy,
            editConfig: cfg => { cfg["vision_feature_select_strategy"] = "full"; cfg["image_seq_length"] = 37; });
        using var g = new Golden("tiny-llava-mha", "circle");
        using var m = LoadedModel.Load(dir);
        var input = m.Prepare(g.Prompt, g.ImagePath);
        Assert.Equal(37, input.ImagePositions.Length);
        Assert.Equal(g.SeqLenPlus(1), input.SeqLen);
        // The class token first, then the 6 x 6 grid (37 = round(sqrt(37))^2 + 1 was once guessed; now the config says it).
        var layout = input.ImageLayout!;
        Assert.Equal((true, 6, 6), (layout.HasCls, layout.Grid.Rows, layout.Grid.Cols));
        Assert.Null(layout.CellOf(0));
        Assert.Equal(new Hooks.GridCell(0, 0, 0), layout.CellOf(1));
        Assert.Equal(new Hooks.GridCell(0, 5, 5), layout.CellAt(input.ImagePositions[^1]));
        using var logits = m.Forward(input);
        Assert.Equal(602, logits.shape[0]);
    }
}
