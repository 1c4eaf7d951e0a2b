using System.Collections.Concurrent;
using System.Text.Json;
using LlavaMech.Hooks;
using LlavaMech.Testing;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Analysis.Tests;

/// <summary>A tiny fixture model's language-model weights (float32 copies, plus the stored tensors).</summary>
public sealed class TinyModel
{
    private static readonly ConcurrentDictionary<string, Lazy<TinyModel>> Cache = new();

    public required string Name { get; init; }
    public required IReadOnlyDictionary<string, Tensor> Stored { get; init; }
    public required string Prefix { get; init; }      // "language_model.model." or "model."
    public required string LmHeadKey { get; init; }
    public int Layers, Heads, KvHeads, HeadDim, Hidden, Intermediate, Vocab;
    public double Eps;

    public static TinyModel Load(string name) => Cache.GetOrAdd(name, n => new Lazy<TinyModel>(() => Read(n))).Value;

    private static TinyModel Read(string name)
    {
        var dir = Fixtures.Model(name);
        var stored = SafeTensorsFile.Load(Path.Combine(dir, "model.safetensors"));
        using var cfgDoc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var cfg = cfgDoc.RootElement.TryGetProperty("text_config", out var tc) ? tc : cfgDoc.RootElement;
        var oKey = stored.Keys.First(k => k.EndsWith("layers.0.self_attn.o_proj.weight", StringComparison.Ordinal));
        var prefix = oKey[..oKey.IndexOf("layers.0.", StringComparison.Ordinal)];
        var lmHead = stored.Keys.First(k => k.EndsWith("lm_head.weight", StringComparison.Ordinal));
        int heads = cfg.GetProperty("num_attention_heads").GetInt32();
        int hidden = cfg.GetProperty("hidden_size").GetInt32();
        return new TinyModel
        {
            Name = name,
            Stored = stored,
            Prefix = prefix,
            LmHeadKey = lmHead,
            Layers = cfg.GetProperty("num_hidden_layers").GetInt32(),
            Heads = heads,
            KvHeads = cfg.TryGetProperty("num_key_value_heads", out var kv) ? kv.GetInt32() : heads,
            HeadDim = cfg.TryGetProperty("head_dim", out var hd) ? hd.GetInt32() : hidden / heads,
            Hidden = hidden,
            Intermediate = cfg.GetProperty("intermediate_size").GetInt32(),
            Vocab = cfg.GetProperty("vocab_size").GetInt32(),
            Eps = cfg.GetProperty("rms_norm_eps").GetDouble(),
        };
    }

    public bool IsFloat16 => Stored[LmHeadKey].dtype == ScalarType.Float16;

    /// <summary>A language-model tensor by its name after the prefix, in float32 (or as stored).</summary>
    public Tensor Lm(string suffix, bool asStored = false) => Convert(Stored[Prefix + suffix], asStored);

    public Tensor LmHead(bool asStored = false) => Convert(Stored[LmHeadKey], asStored);

    private static Tensor Convert(Tensor t, bool asStored) => asStored ? t : t.to(ScalarType.Float32);

    /// <summary>The weights the statistics read; <paramref name="asStored"/>: the stored dtype (float16 for tiny-llava-336).</summary>
    public ReadoutWeights Readout(bool asStored = false) => new(
        Lm("norm.weight", asStored), LmHead(asStored), Eps,
        Enumerable.Range(0, Layers).Select(l => Lm($"layers.{l}.self_attn.o_proj.weight", asStored)).ToArray(),
        Enumerable.Range(0, Layers).Select(l => Lm($"layers.{l}.mlp.down_proj.weight", asStored)).ToArray(),
        Heads, KvHeads);

    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps) =>
        x * (x.pow(2).mean(new long[] { -1 }, keepdim: true) + eps).rsqrt() * weight;
}

/// <summary>One golden case: the tensors of golden_&lt;id&gt;.safetensors and its JSON.</summary>
public sealed class GoldenCase
{
    private static readonly ConcurrentDictionary<string, Lazy<GoldenCase>> Cache = new();

    public required string Model { get; init; }
    public required string Id { get; init; }
    public required IReadOnlyDictionary<string, Tensor> T { get; init; }
    public required JsonElement Json { get; init; }

    public static readonly (string Model, string Case)[] All =
    {
        ("tiny-llava-mha", "circle"), ("tiny-llava-mha", "square_wide"), ("tiny-llava-mha", "llava_text_banana"),
        ("tiny-llava-mha", "llava_text_sky"), ("tiny-vicuna", "vicuna_banana"), ("tiny-vicuna", "vicuna_sky"),
        ("tiny-llava-336", "photo"),
        ("tiny-llava-next-vicuna", "wide_circle"), ("tiny-llava-next-vicuna", "tall_triangle"), ("tiny-llava-next-vicuna", "square_near"),
        ("tiny-llava-next-vicuna", "text_banana"),
    };

    public static IEnumerable<object[]> Cases => All.Select(c => new object[] { c.Model, c.Case });

    public static GoldenCase Load(string model, string id) => Cache.GetOrAdd(model + "/" + id, _ => new Lazy<GoldenCase>(() =>
    {
        var tensors = SafeTensorsFile.Load(Fixtures.File(model, $"golden_{id}.safetensors"));
        var json = JsonDocument.Parse(File.ReadAllText(Fixtures.File(model, $"golden_{id}.json"))).RootElement.Clone();
        return new GoldenCase { Model = model, Id = id, T = tensors, Json = json };
    })).Value;

    public long SeqLen => T["layer_inputs"].shape[1];
    public bool HasImage => T.ContainsKey("image_positions");

    /// <summary>
    /// The golden input's image-token layout, from the fixture's config (image_size / patch_size patches per side, the class
    /// token with strategy full) at the first golden image position; null without an image.
    /// </summary>
    public ImageTokenLayout? ImageLayout
    {
        get
        {
            if (!HasImage) return null;
            using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.File(Model, "config.json")));
            var v = doc.RootElement.GetProperty("vision_config");
            int side = v.GetProperty("image_size").GetInt32() / v.GetProperty("patch_size").GetInt32();
            bool cls = doc.RootElement.TryGetProperty("vision_feature_select_strategy", out var st) && st.GetString() == "full";
            int offset = (int)T["image_positions"][0].item<long>();
            if (Json.TryGetProperty("unpadded_grid_rows_cols", out var kept))
            {
                // LLaVA-NeXT: the base tile's grid, then the kept high-resolution grid with a newline ending each row.
                int rows = kept[0].GetInt32(), cols = kept[1].GetInt32();
                return new ImageTokenLayout(offset, side * side + rows * (cols + 1), false,
                    [new ImageGrid(0, side, side), new ImageGrid(side * side, rows, cols, cols + 1)]);
            }
            return ImageTokenLayout.SingleGrid(offset, side, side, cls);
        }
    }
    public int TargetId => Json.GetProperty("target_id").GetInt32();

    public (int Layer, int Head, double Score)[] TopHeads => Json.GetProperty("top_heads").EnumerateArray()
        .Select(e => e.EnumerateArray().ToArray()).Select(a => (a[0].GetInt32(), a[1].GetInt32(), a[2].GetDouble())).ToArray();

    public double[] JsonDoubles(string name) => Json.GetProperty(name).EnumerateArray().Select(e => e.GetDouble()).ToArray();
    public int[] JsonInts(string name) => Json.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>[L, H, T]: the last query row of every pattern.</summary>
    public Tensor PatternLastRow => T.TryGetValue("attn_weights_last_row", out var r) ? r : T["attn_weights"].select(2, SeqLen - 1);

    /// <summary>The statistics' inputs rebuilt from the golden activations and the model's weights (float32).</summary>
    public LastPositionActivations Activations(TinyModel m)
    {
        using var scope = NewDisposeScope();
        long t = SeqLen - 1;
        var li = T["layer_inputs"];
        var ao = T["attn_outputs"];
        var values = new Tensor[m.Layers];
        var mlpPost = new Tensor[m.Layers];
        for (int l = 0; l < m.Layers; l++)
        {
            var n1 = TinyModel.RmsNorm(li[l], m.Lm($"layers.{l}.input_layernorm.weight"), m.Eps);
            values[l] = nn.functional.linear(n1, m.Lm($"layers.{l}.self_attn.v_proj.weight")).reshape(SeqLen, m.KvHeads, m.HeadDim);
            var n2 = TinyModel.RmsNorm(li[l][t] + ao[l][t], m.Lm($"layers.{l}.post_attention_layernorm.weight"), m.Eps);
            mlpPost[l] = nn.functional.silu(nn.functional.linear(n2, m.Lm($"layers.{l}.mlp.gate_proj.weight")))
                         * nn.functional.linear(n2, m.Lm($"layers.{l}.mlp.up_proj.weight"));
        }
        return new LastPositionActivations(
            li.select(1, t).clone().MoveToOuterDisposeScope(),
            ao.select(1, t).clone().MoveToOuterDisposeScope(),
            T["ffn_outputs"].select(1, t).clone().MoveToOuterDisposeScope(),
            T["final_output_prenorm"][t].clone().MoveToOuterDisposeScope(),
            PatternLastRow.clone().MoveToOuterDisposeScope(),
            stack(values, 0).MoveToOuterDisposeScope(),
            stack(mlpPost, 0).MoveToOuterDisposeScope());
    }
}
