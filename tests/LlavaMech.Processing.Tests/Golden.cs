using System.Text.Json;
using LlavaMech.Testing;

namespace LlavaMech.Processing.Tests;

/// <summary>One golden case of tests/fixtures: its JSON, tensors and model numbers.</summary>
internal sealed record Golden(string Model, string Case, JsonElement Json, Safetensors Tensors)
{
    /// <summary>Every case with its model folder (all that have golden input_ids).</summary>
    public static readonly (string Model, string Case)[] All =
    [
        ("tiny-llava-mha", "circle"),
        ("tiny-llava-mha", "square_wide"),
        ("tiny-llava-mha", "llava_text_banana"),
        ("tiny-llava-mha", "llava_text_sky"),
        ("tiny-vicuna", "vicuna_banana"),
        ("tiny-vicuna", "vicuna_sky"),
        ("tiny-llava-336", "photo"),
    ];

    public static IEnumerable<object[]> AllCases => All.Select(c => new object[] { c.Model, c.Case });

    public static Golden Load(string model, string name)
    {
        var json = JsonDocument.Parse(File.ReadAllText(Fixtures.File(model, $"golden_{name}.json"))).RootElement.Clone();
        return new Golden(model, name, json, new Safetensors(Fixtures.File(model, $"golden_{name}.safetensors")));
    }

    public string Prompt => Json.GetProperty("prompt").GetString()!;

    public string? Image => Json.GetProperty("image").ValueKind == JsonValueKind.String ? Json.GetProperty("image").GetString() : null;

    public string Dir => Fixtures.Model(Model);

    /// <summary>The numbers PromptEncoder takes, from the model's config.json (parsed here only for the test).</summary>
    public (int Bos, int? ImageToken, int ImageSeqLength, int MaxPositions) ModelNumbers()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.File(Model, "config.json")));
        var r = doc.RootElement;
        var text = r.TryGetProperty("text_config", out var tc) ? tc : r;
        int? image = r.TryGetProperty("image_token_index", out var it) ? it.GetInt32() : null;
        int seq = r.TryGetProperty("image_seq_length", out var sl) ? sl.GetInt32() : 0;
        return (text.GetProperty("bos_token_id").GetInt32(), image, seq, text.GetProperty("max_position_embeddings").GetInt32());
    }
}
