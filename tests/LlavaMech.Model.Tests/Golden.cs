using System.Text.Json;
using LlavaMech.Checkpoints;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Model.Tests;

/// <summary>One reference case: golden_&lt;case&gt;.json (target, top-5, prompt) and .safetensors (tensors).</summary>
public sealed class Golden : IDisposable
{
    private readonly SafetensorsFile _file;

    public Golden(string model, string caseId)
    {
        Model = model;
        Case = caseId;
        Json = JsonDocument.Parse(System.IO.File.ReadAllText(Fixtures.File(model, $"golden_{caseId}.json"))).RootElement;
        _file = SafetensorsFile.Open(Fixtures.File(model, $"golden_{caseId}.safetensors"));
    }

    public string Model { get; }
    public string Case { get; }
    public JsonElement Json { get; }
    public string ModelDir => Fixtures.Model(Model);
    public string Prompt => Json.GetProperty("prompt").GetString()!;
    public string? ImagePath => Json.TryGetProperty("image", out var i) && i.ValueKind == JsonValueKind.String ? Fixtures.File(Model, i.GetString()!) : null;
    public int TargetId => Json.GetProperty("target_id").GetInt32();
    public int[] Top5 => Json.GetProperty("top5_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    public double[] Top5Probs => Json.GetProperty("top5_probs").EnumerateArray().Select(e => e.GetDouble()).ToArray();

    public int SeqLenPlus(int extra) => Json.GetProperty("seq_len").GetInt32() + extra;

    public bool Has(string name) => _file.Tensors.ContainsKey(name);

    /// <summary>A golden tensor as float32 (or int64 for ids).</summary>
    public Tensor this[string name] => _file.Tensors[name].DType == SafetensorsDType.I64
        ? _file.Read(name, ScalarType.Int64)
        : _file.Read(name, ScalarType.Float32);

    public void Dispose() => _file.Dispose();

    public static IEnumerable<object[]> VisionCases() => [["tiny-llava-mha", "circle"], ["tiny-llava-mha", "square_wide"], ["tiny-llava-336", "photo"],
        .. NextVisionCases()];
    public static IEnumerable<object[]> TextCases() => [["tiny-llava-mha", "llava_text_banana"], ["tiny-llava-mha", "llava_text_sky"], ["tiny-vicuna", "vicuna_banana"], ["tiny-vicuna", "vicuna_sky"],
        ["tiny-llava-next-vicuna", "text_banana"]];
    /// <summary>LLaVA-NeXT (anyres): a wide, a tall and a near-square image, each with its own tiling and token count.</summary>
    public static IEnumerable<object[]> NextVisionCases() => [["tiny-llava-next-vicuna", "wide_circle"], ["tiny-llava-next-vicuna", "tall_triangle"], ["tiny-llava-next-vicuna", "square_near"]];
}

public static class Close
{
    /// <summary>docs/METHOD.md, "Golden files": within 1e-3 absolute, relative 1e-3 for large values. Names the place that drifts.</summary>
    public static void Assert(Tensor expected, Tensor actual, string what, double atol = 1e-3, double rtol = 1e-3)
    {
        using var scope = NewDisposeScope();
        var e = expected.to(ScalarType.Float64).cpu();
        var a = actual.to(ScalarType.Float64).cpu();
        Xunit.Assert.True(e.shape.SequenceEqual(a.shape), $"{what}: shape [{string.Join(",", a.shape)}], expected [{string.Join(",", e.shape)}]");
        var excess = (a - e).abs() - (atol + rtol * e.abs());
        var worst = excess.max().item<double>();
        if (worst > 0)
        {
            var idx = excess.argmax().item<long>();
            var flatE = e.flatten(); var flatA = a.flatten();
            Xunit.Assert.Fail($"{what}: differs at flat index {idx}: {flatA[idx].item<double>():G6} vs golden {flatE[idx].item<double>():G6} (max abs error {(a - e).abs().max().item<double>():G3})");
        }
    }

    public static double MaxAbs(Tensor expected, Tensor actual)
    {
        using var scope = NewDisposeScope();
        return (expected.to(ScalarType.Float64).cpu() - actual.to(ScalarType.Float64).cpu()).abs().max().item<double>();
    }
}
