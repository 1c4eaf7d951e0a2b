using System.Text.Json.Nodes;
using LlavaMech.Checkpoints;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Model.Tests;

/// <summary>A fixture checkpoint written again: renamed to another weight layout, sharded, converted, transformed.</summary>
public static class CheckpointRewrite
{
    /// <summary>
    /// Copies the fixture's non-weight files into <paramref name="root"/>/<paramref name="name"/> (config.json edited by
    /// <paramref name="editConfig"/>), then writes its weights renamed to <paramref name="layout"/>, transformed by
    /// <paramref name="transform"/>(canonical name, float32 tensor) and stored as <paramref name="storeAs"/>. Linked into
    /// the other test projects that need checkpoint variants (grouped-query, bf16 weights).
    /// </summary>
    public static string Write(string root, string fixture, string name, WeightLayout layout, int shards = 1, SafetensorsDType? storeAs = null,
        Func<string, Tensor, Tensor>? transform = null, Action<JsonObject>? editConfig = null)
    {
        var dir = Path.Combine(root, name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Fixtures.Model(fixture)))
            if (!f.EndsWith(".safetensors") && !Path.GetFileName(f).StartsWith("golden_")) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        if (editConfig is not null)
        {
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
            editConfig(cfg);
            File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        }
        using var src = Checkpoint.Open(Fixtures.Model(fixture));
        var kind = fixture == "tiny-vicuna" ? ModelKind.Llama : ModelKind.Llava;
        var srcLayout = WeightNames.Detect(src.Tensors.Keys, kind);
        var tensors = src.Tensors.Keys.Select(k =>
        {
            var canonical = WeightNames.FromFile(k, srcLayout)!;
            var t = src.Read(k, ScalarType.Float32);
            return (WeightNames.ToFile(canonical, layout), transform is null ? t : transform(canonical, t));
        }).ToList();
        SafetensorsWriter.WriteSharded(dir, tensors, shards, storeAs);
        return dir;
    }
}
