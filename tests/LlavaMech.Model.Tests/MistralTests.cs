using System.Text.Json.Nodes;
using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Model.Tests;

/// <summary>
/// LLaVA-NeXT's Mistral text model (docs/METHOD_NEXT.md section 9), checked by independent routes, as no Mistral golden is
/// given: a sliding window at least as wide as the sequence is plain causal attention; a window of 1 makes every position
/// attend only to itself; the fused kernel with the window's mask equals the eager masked softmax; the window's pattern is
/// exactly zero outside it; a Mistral config with a null window over the Llama fixture's weights is that fixture, in
/// float32 and in bf16 shards; GQA and an independent head_dim load and run.
/// </summary>
public class MistralTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-mistral-").FullName;
    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private const int T = 20;

    /// <summary>A tiny llava_next config with a Mistral (or Llama) text model: 4 query heads, 2 KV heads, head_dim 16 (not 48 / 4).</summary>
    private static ModelConfig Config(string textType, string window) => ModelConfig.Parse($$"""
        { "model_type": "llava_next", "image_grid_pinpoints": [[28, 56]], "image_token_index": 99,
          "vision_config": { "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 28, "patch_size": 14 },
          "text_config": { "model_type": "{{textType}}", "vocab_size": 100, "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rope_theta": 1000000.0, "max_position_embeddings": 256 {{window}} } }
        """, "/models/mistral-test/config.json");

    private static (LoadedModel Model, Tensor Ids) Random(string textType, string window)
    {
        var m = LoadedModel.CreateRandom(Config(textType, window), seed: 7, std: 0.2);
        var ids = arange(3, 3 + T, dtype: ScalarType.Int64).unsqueeze(0);
        return (m, ids);
    }

    private static (Tensor Logits, Tensor[] Patterns) Eager(LoadedModel m, Tensor ids)
    {
        var plan = new CapturePlan();
        for (int l = 0; l < m.Layers; l++) plan.Add(HookNames.AttnPattern(l));
        using var cache = new ActivationCache(plan);
        var logits = m.Forward(ids, null, cache, Enumerable.Range(0, T).Select(i => (long)i).ToArray()).clone();
        return (logits, Enumerable.Range(0, m.Layers).Select(l => cache[HookNames.AttnPattern(l)].clone()).ToArray());
    }

    private static Tensor Fused(LoadedModel m, Tensor ids) => m.Forward(ids, null, null, Enumerable.Range(0, T).Select(i => (long)i).ToArray());

    [Fact]
    public void Mistral_settings_are_read()
    {
        var c = Config("mistral", ", \"sliding_window\": 6");
        Assert.Equal(6, c.Text.SlidingWindow);
        Assert.Equal(16, c.Text.HeadDim);
        Assert.Equal(2, c.Text.NumKeyValueHeads);
        Assert.Equal(1e6, c.Text.RopeTheta);
        using var m = LoadedModel.CreateRandom(c);
        Assert.All(m.LanguageModel.Model.Layers, l => Assert.Equal(6, l.SelfAttn.SlidingWindow));
        Assert.Equal([48L, 64], m.OProj[0].shape);   // [D, H * head_dim]
    }

    [Fact]
    public void A_window_wider_than_the_sequence_equals_plain_causal_attention()
    {
        using var scope = NewDisposeScope();
        var (mistral, ids) = Random("mistral", ", \"sliding_window\": 64");
        var (llama, _) = Random("llama", "");
        using (mistral) using (llama)
        {
            var (a, pa) = Eager(mistral, ids);
            var (b, pb) = Eager(llama, ids);
            Close.Assert(b, a, "eager logits, window 64 vs causal", atol: 1e-6, rtol: 0);
            for (int l = 0; l < pa.Length; l++) Close.Assert(pb[l], pa[l], $"layer {l} pattern", atol: 1e-7, rtol: 0);
            Close.Assert(Fused(llama, ids), Fused(mistral, ids), "fused logits", atol: 1e-6, rtol: 0);
            Close.Assert(a, Fused(mistral, ids), "fused vs eager", atol: 1e-5, rtol: 0);
        }
    }

    [Fact]
    public void A_window_of_one_makes_every_position_attend_only_to_itself()
    {
        using var scope = NewDisposeScope();
        var (m, ids) = Random("mistral", ", \"sliding_window\": 1");
        using (m)
        {
            var (eager, patterns) = Eager(m, ids);
            var identity = eye(T).expand(1, 4, T, T);
            foreach (var p in patterns) Close.Assert(identity, p, "pattern with window 1", atol: 0, rtol: 0);
            // Each position's head output is its own value vector: z = v (query head h reads KV head h / 2).
            var plan = new CapturePlan().Add(HookNames.AttnZ(0)).Add(HookNames.AttnV(0));
            using var cache = new ActivationCache(plan);
            m.Forward(ids, null, cache);
            var v = cache[HookNames.AttnV(0)];                                        // [1, T, KV, d]
            Close.Assert(v.repeat_interleave(2, dim: 2), cache[HookNames.AttnZ(0)], "z = v with window 1", atol: 1e-6, rtol: 0);
            Close.Assert(eager, Fused(m, ids), "fused (masked kernel) vs eager", atol: 1e-5, rtol: 0);
            var (causal, _) = Random("llama", "");
            using (causal) Assert.True(Close.MaxAbs(Fused(causal, ids), eager) > 1e-3, "window 1 must change the model, or the test proves nothing");
        }
    }

    [Fact]
    public void An_active_window_masks_exactly_the_keys_it_must_and_both_kernels_agree()
    {
        using var scope = NewDisposeScope();
        const int w = 5;
        var (m, ids) = Random("mistral", $", \"sliding_window\": {w}");
        using (m)
        {
            var (eager, patterns) = Eager(m, ids);
            foreach (var p in patterns)
            {
                var a = p[0].to(ScalarType.Float64);                                  // [H, T, T]
                for (int i = 0; i < T; i++)
                    for (int j = 0; j < T; j++)
                    {
                        bool visible = j <= i && i - j < w;
                        var col = a[.., i, j];
                        if (!visible) Assert.True(col.abs().max().item<double>() == 0, $"query {i} sees key {j} outside the window");
                        else Assert.True(col.min().item<double>() > 0, $"query {i} does not see key {j} in the window");
                    }
                Close.Assert(ones(4, T), a.sum(-1), "rows sum to 1", atol: 1e-6, rtol: 0);
            }
            Close.Assert(eager, Fused(m, ids), "fused (masked kernel) vs eager", atol: 1e-5, rtol: 0);
        }
    }

    /// <summary>The NeXT fixture's weights under a Mistral text config (same block math), stored as given.</summary>
    private string MistralCopy(string name, string window, int shards, SafetensorsDType? storeAs)
    {
        const string fixture = "tiny-llava-next-vicuna";
        var dir = Path.Combine(_tmp, name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Fixtures.Model(fixture)))
            if (!f.EndsWith(".safetensors") && !Path.GetFileName(f).StartsWith("golden_")) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
        var text = cfg["text_config"]!.AsObject();
        text["model_type"] = "mistral";
        foreach (var key in new[] { "attention_bias", "mlp_bias", "pretraining_tp" }) text.Remove(key);
        text["sliding_window"] = window == "null" ? null : JsonValue.Create(int.Parse(window));
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        using var src = Checkpoint.Open(Fixtures.Model(fixture));
        SafetensorsWriter.WriteSharded(dir, src.Tensors.Keys.Select(k => (k, src.Read(k, ScalarType.Float32))).ToList(), shards, storeAs);
        return dir;
    }

    [Fact]
    public void A_mistral_text_model_without_a_window_over_the_fixture_weights_gives_the_reference_in_float32_and_bf16_shards()
    {
        using var g = new Golden("tiny-llava-next-vicuna", "wide_circle");
        using var scope = NewDisposeScope();
        foreach (var (name, shards, dtype, atol) in new[] { ("f32", 1, (SafetensorsDType?)null, 1e-3), ("bf16", 3, SafetensorsDType.BF16, 0.05) })
        {
            var dir = MistralCopy(name, "null", shards, dtype);
            if (shards > 1) Assert.True(File.Exists(Path.Combine(dir, "model.safetensors.index.json")));
            using var m = LoadedModel.Load(dir);
            Assert.Equal("mistral", m.Config.Text.ModelType);
            Assert.Null(m.Config.Text.SlidingWindow);
            var logits = m.Forward(m.Prepare(g.Prompt, g.ImagePath));
            Assert.True(Close.MaxAbs(g["logits_last"], logits) <= atol, $"{name}: logits drift {Close.MaxAbs(g["logits_last"], logits):G3}");
        }
    }

    [Fact]
    public void A_window_shorter_than_the_packed_sequence_changes_the_answer_position_and_both_kernels_agree()
    {
        // 151 positions, window 64: the last position sees only positions 87..150, so the first image tokens reach it only through others.
        using var g = new Golden("tiny-llava-next-vicuna", "wide_circle");
        using var scope = NewDisposeScope();
        using var m = LoadedModel.Load(MistralCopy("w64", "64", 1, null));
        var input = m.Prepare(g.Prompt, g.ImagePath);
        var fused = m.Forward(input);
        using var cache = new ActivationCache(new CapturePlan().Add(HookNames.AttnPattern(0), PositionSelector.Last));
        var eager = m.Forward(input, cache);
        var last = cache[HookNames.AttnPattern(0)][0, .., 0];                         // [H, T]
        Assert.Equal(0.0, last.narrow(1, 0, input.SeqLen - 64).abs().max().item<float>());
        Assert.True(last.narrow(1, input.SeqLen - 64, 64).min().item<float>() > 0);
        Close.Assert(fused, eager, "fused vs eager with the window", atol: 1e-5, rtol: 0);
        Assert.True(Close.MaxAbs(g["logits_last"], fused) > 1e-3, "an active window must change the logits");
    }
}
