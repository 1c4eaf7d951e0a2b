using System.Text.Json.Nodes;
using LlavaMech.Checkpoints;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Model;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Tests;

/// <summary>
/// Prefix reuse (docs/METHOD.md, "Prefix reuse"): the same examples with <c>--prefix-reuse on</c> and <c>off</c> give every
/// row of every table equal to 1e-5 (float32), on the golden checkpoints and the hidden-style variants: grouped-query
/// attention, bf16 weights, Mistral's sliding window shorter than the prefix, LLaVA-NeXT's packed tiles; with questions
/// longer than the prefix, examples that share an image but not the prompt text before it, an image asked once and
/// text-only examples, and the interventions (zero-ablation: a full pass; knockout from the last position: after the prefix).
/// </summary>
public class PrefixReuseTests : IDisposable
{
    private const double Tol = 1e-5;
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-prefix-").FullName;
    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private static readonly string LongQuestion = string.Join(" ", Enumerable.Repeat("Look at the picture carefully and then tell me plainly what the color of the shape is.", 6));

    /// <summary>Examples: image A asked 3 ways (one question longer than the prefix), A again after other prompt text (twice),
    /// image B once, two text-only prompts.</summary>
    private static List<ManifestExample> Works(string imageA, string imageB)
    {
        var list = new List<(string Id, string? Image, string Prompt)>
        {
            ("a-circle", imageA, "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is"),
            ("a-square", imageA, "USER: <image>\nWhat is the color of the square?\nASSISTANT: The color of the square is"),
            ("a-long", imageA, $"USER: <image>\n{LongQuestion}\nASSISTANT: The color is"),
            ("a-system-circle", imageA, "SYSTEM: Answer with one word. USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is"),
            ("a-system-triangle", imageA, "SYSTEM: Answer with one word. USER: <image>\nWhat is the color of the triangle?\nASSISTANT: The color of the triangle is"),
            ("b-circle", imageB, "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is"),
            ("t-banana", null, "USER: What is the color of a banana?\nASSISTANT: The color of a banana is"),
            ("t-sky", null, "USER: What is the color of the sky?\nASSISTANT: The color of the sky is"),
        };
        return list.Select((w, i) => new ManifestExample(w.Id, w.Image is null ? "tqa" : "vqa", w.Image, w.Image is null ? null : Path.GetFileName(w.Image),
            w.Prompt, null, null, "{}", i + 1)).ToList();
    }

    /// <summary>A copy of a fixture with its config edited and its weights transformed and stored as <paramref name="storeAs"/>.</summary>
    private string Variant(string fixture, string name, Action<JsonObject>? config = null, Func<string, Tensor, Tensor>? weights = null,
        SafetensorsDType? storeAs = null) =>
        Model.Tests.CheckpointRewrite.Write(_tmp, fixture, name, WeightLayout.LlavaLegacy, 1, storeAs, weights, config);

    /// <summary>Key and value projections averaged over groups of 2 heads: a grouped-query model (KV = H / 2).</summary>
    private static Tensor Grouped(string name, Tensor w)
    {
        if (!(name.Contains("language_model") && (name.EndsWith("k_proj.weight") || name.EndsWith("v_proj.weight")))) return w;
        long d = 16, kv = w.shape[0] / d / 2;
        return w.view(kv, 2, d, -1).mean([1]).reshape(kv * d, -1);
    }

    public static IEnumerable<object[]> Cases() => [["llava-1.5"], ["gqa"], ["bf16-weights"], ["mistral-window-8"], ["llava-next"]];

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_table_is_the_same_with_and_without_reuse(string variant)
    {
        string fixture = variant == "llava-next" ? "tiny-llava-next-vicuna" : "tiny-llava-mha";
        string dir = variant switch
        {
            "gqa" => Variant(fixture, variant, c => c["text_config"]!["num_key_value_heads"] = 2, Grouped),
            "bf16-weights" => Variant(fixture, variant, storeAs: SafetensorsDType.BF16),
            "mistral-window-8" => Variant(fixture, variant, c => { c["text_config"]!["model_type"] = "mistral"; c["text_config"]!["sliding_window"] = 8; }),
            _ => Fixtures.Model(fixture),
        };
        var (imageA, imageB) = fixture == "tiny-llava-mha"
            ? (Fixtures.File(fixture, "red_circle.png"), Fixtures.File(fixture, "wide_scene.png"))
            : (Fixtures.File(fixture, "wide_200x90.png"), Fixtures.File(fixture, "tall_90x220.png"));
        var works = Works(imageA, imageB);
        var settings = new AnalysisSettings { TopNeurons = 5, Causal = 2, KnockoutWindow = 2, BatchSize = 4 };

        using var model = LoadedModel.Load(dir);   // float32 compute, whatever the stored dtype
        Assert.Equal(ScalarType.Float32, model.DType);
        using var off = new PipelineAnalyzer(model);
        var plain = off.RunBatch(works, settings with { PrefixReuse = PrefixReuse.Off });
        using var on = new PipelineAnalyzer(model);
        var reused = on.RunBatch(works, settings with { PrefixReuse = PrefixReuse.On });

        // Image A's three questions share one prefix, its two questions after the system text another; B (asked once) and
        // the text-only prompts run in full.
        Assert.Equal(2, on.PrefixPasses);
        Assert.Equal(5, on.ExamplesAfterPrefix);
        Assert.Equal(0, on.BatchFallbacks);
        Assert.Equal(0, off.PrefixPasses);
        int compared = 0;
        for (int i = 0; i < works.Count; i++)
        {
            Assert.False(plain[i].Rejected, plain[i].RejectReason);
            Assert.False(reused[i].Rejected, reused[i].RejectReason);
            var (a, b) = (plain[i].Rows!.All, reused[i].Rows!.All);
            Assert.Equal(a.Count, b.Count);
            for (int r = 0; r < a.Count; r++) compared += AssertRowEqual(a[r], b[r], $"{variant} {works[i].Id} row {r}");
        }
        Assert.Contains(reused.SelectMany(o => o.Rows!.All), r => r is Stats.KnockoutEffectRow k && k.ExampleId == "a-long");
        Assert.True(compared > 1000, $"only {compared} values compared");
    }

    /// <summary>
    /// <c>--prefix-reuse auto</c> (the default) reuses a shared prefix of at least <see cref="PipelineAnalyzer.AutoPrefixTokens"/>
    /// tokens and runs shorter ones (the toy model's) as batched full passes; the tables are the same either way.
    /// </summary>
    [Fact]
    public void Auto_reuses_long_prefixes_only()
    {
        string image = Fixtures.File("tiny-llava-mha", "red_circle.png");
        string system = $"SYSTEM: {LongQuestion} {LongQuestion} USER: <image>\n";
        var prompts = new[]
        {
            ("short-circle", "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is"),
            ("short-square", "USER: <image>\nWhat is the color of the square?\nASSISTANT: The color of the square is"),
            ("long-circle", system + "What is the color of the circle?\nASSISTANT: The color of the circle is"),
            ("long-square", system + "What is the color of the square?\nASSISTANT: The color of the square is"),
        };
        var works = prompts.Select((w, i) => new ManifestExample(w.Item1, "vqa", image, "red_circle.png", w.Item2, null, null, "{}", i + 1)).ToList();
        var settings = new AnalysisSettings { TopNeurons = 5, BatchSize = 4 };
        Assert.Equal(PrefixReuse.Auto, settings.PrefixReuse);

        using var model = LoadedModel.Load(Fixtures.Model("tiny-llava-mha"));
        var shortIds = model.Prepare(works[0].Prompt, image).InputIds;
        var longIds = model.Prepare(works[2].Prompt, image).InputIds;
        Assert.True(shortIds.Length < PipelineAnalyzer.AutoPrefixTokens, $"{shortIds.Length} tokens");
        Assert.True(longIds.Length > PipelineAnalyzer.AutoPrefixTokens + 10, $"{longIds.Length} tokens");

        using var auto = new PipelineAnalyzer(model);
        var reused = auto.RunBatch(works, settings);
        Assert.Equal(1, auto.PrefixPasses);            // the long system text's image only
        Assert.Equal(2, auto.ExamplesAfterPrefix);
        using var off = new PipelineAnalyzer(model);
        var plain = off.RunBatch(works, settings with { PrefixReuse = PrefixReuse.Off });
        for (int i = 0; i < works.Count; i++)
        {
            var (a, b) = (plain[i].Rows!.All, reused[i].Rows!.All);
            Assert.Equal(a.Count, b.Count);
            for (int r = 0; r < a.Count; r++) AssertRowEqual(a[r], b[r], $"auto {works[i].Id} row {r}");
        }
    }

    /// <summary>Every column of two rows of one table equal (numbers to <see cref="Tol"/> relative to their size); the values compared.</summary>
    internal static int AssertRowEqual(object a, object b, string where)
    {
        Assert.Equal(a.GetType(), b.GetType());
        int n = 0;
        foreach (var p in a.GetType().GetProperties())
        {
            if (p.GetIndexParameters().Length > 0 || p.Name == "EqualityContract") continue;
            object? x = p.GetValue(a), y = p.GetValue(b);
            n++;
            // A signed share (part / total of a head's image log-increase) divides sums that cancel: its rounding is that of
            // position_stats (compared to Tol) times the cancellation, up to about 20 on these random-weight fixtures.
            double tol = p.Name == nameof(Stats.ImagePartShareRow.LogIncreaseShare) ? 20 * Tol : Tol;
            if (x is double dx && y is double dy)
                Assert.True(Math.Abs(dx - dy) <= tol * Math.Max(1, Math.Abs(dx)) || (double.IsNaN(dx) && double.IsNaN(dy)),
                    $"{where} ({a.GetType().Name}.{p.Name}): {dx:R} without reuse, {dy:R} with it");
            else if (x is string sx && y is string sy && sx.StartsWith('{') && sy.StartsWith('{'))   // JSON columns (metadata): numbers to Tol too
                n += AssertJsonEqual(JsonNode.Parse(sx), JsonNode.Parse(sy), $"{where} ({a.GetType().Name}.{p.Name})");
            else Assert.True(Equals(x, y), $"{where} ({a.GetType().Name}.{p.Name}): {x} without reuse, {y} with it");
        }
        return n;
    }

    private static int AssertJsonEqual(JsonNode? x, JsonNode? y, string where)
    {
        switch (x)
        {
            case JsonObject ox:
                var oy = Assert.IsType<JsonObject>(y);
                Assert.Equal(ox.Select(k => k.Key), oy.Select(k => k.Key));
                return ox.Sum(k => AssertJsonEqual(k.Value, oy[k.Key], $"{where}.{k.Key}"));
            case JsonArray ax:
                var ay = Assert.IsType<JsonArray>(y);
                Assert.Equal(ax.Count, ay.Count);
                return ax.Select((v, i) => AssertJsonEqual(v, ay[i], $"{where}[{i}]")).Sum();
            case JsonValue vx when vx.TryGetValue<double>(out var dx) && y is JsonValue vy && vy.TryGetValue<double>(out var dy):
                Assert.True(Math.Abs(dx - dy) <= Tol * Math.Max(1, Math.Abs(dx)), $"{where}: {dx:R} without reuse, {dy:R} with it");
                return 1;
            default:
                Assert.Equal(x?.ToJsonString(), y?.ToJsonString());
                return 1;
        }
    }

    [Fact]
    public void Shared_length_leaves_every_input_its_last_token()
    {
        Assert.Equal(3, PipelineAnalyzer.SharedLength([[1, 2, 3, 4, 5], [1, 2, 3, 9, 9, 9]]));
        Assert.Equal(3, PipelineAnalyzer.SharedLength([[1, 2, 3, 4], [1, 2, 3, 4, 5]]));   // the shorter keeps its last token
        Assert.Equal(0, PipelineAnalyzer.SharedLength([[1, 2], [7, 2]]));
    }

    [Fact]
    public void A_prefix_cache_evicts_the_least_recently_used_and_refuses_what_cannot_fit()
    {
        using var model = LoadedModel.Load(Fixtures.Model("tiny-llava-mha"));
        using var analyzer = new Explanation.ExampleAnalyzer(model);
        var input = model.Prepare("USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is", Fixtures.File("tiny-llava-mha", "red_circle.png"));
        int length = input.ImagePositions[^1] + 1;
        long bytes = Explanation.ImagePrefix.BytesFor(model, length, input.ImagePositions.Length);
        using var cache = new PrefixCache(2 * bytes);
        int built = 0;
        Explanation.ImagePrefix Build() { built++; return analyzer.Prefix(input, length); }
        var a = cache.GetOrAdd("a", bytes, Build);
        Assert.NotNull(a);
        Assert.Same(a, cache.GetOrAdd("a", bytes, Build));
        cache.GetOrAdd("b", bytes, Build);
        cache.GetOrAdd("a", bytes, Build);            // a is now the most recent
        cache.GetOrAdd("c", bytes, Build);            // evicts b
        Assert.Equal((3, 2, 1L), (built, cache.Count, cache.Evictions));
        Assert.True(cache.Bytes <= cache.CapacityBytes);
        cache.GetOrAdd("a", bytes, Build);
        Assert.Equal(3, built);                        // a survived
        Assert.Null(cache.GetOrAdd("huge", 3 * bytes, Build));
        // The counted bytes bound the real ones: keys and values, features and the lens logits once computed.
        Assert.True(a!.Bytes <= bytes, $"{a.Bytes} bytes held, {bytes} counted");
    }
}
