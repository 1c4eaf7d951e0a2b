using System.Buffers.Binary;
using System.Text.Json.Nodes;

namespace LlavaMech.Testing;

/// <summary>
/// A real fault in a real checkpoint: a copy of a fixture model in which one token's input-embedding row is
/// overwritten, in the safetensors bytes, by a non-finite value (as a corrupt weight row or an fp16 overflow leaves it),
/// so exactly the prompts that contain that token give a non-finite pass.
/// </summary>
public static class FaultyCheckpoint
{
    /// <summary>
    /// Copies the checkpoint folder <paramref name="source"/> to <paramref name="dest"/> and sets every element of the
    /// embedding row of vocabulary piece <paramref name="piece"/> (from tokenizer.json, e.g. "▁triangle") to
    /// <paramref name="value"/>. Returns the token id. Only single-file F32 checkpoints (the fixtures) are handled.
    /// </summary>
    public static int WithNonFiniteEmbeddingRow(string source, string dest, string piece, float value)
    {
        Directory.CreateDirectory(dest);
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(dest, Path.GetFileName(f)), overwrite: true);

        var vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(dest, "tokenizer.json")))!["model"]!["vocab"]!.AsObject();
        int token = (int?)vocab[piece] ?? throw new ArgumentException($"'{piece}' is not a piece of {source}/tokenizer.json");

        string weights = Path.Combine(dest, "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        var header = JsonNode.Parse(bytes.AsSpan(8, (int)headerLength))!.AsObject();
        var (name, entry) = header.Single(kv => kv.Key.EndsWith("embed_tokens.weight", StringComparison.Ordinal));
        if ((string?)entry!["dtype"] != "F32") throw new NotSupportedException($"{name} is {(string?)entry["dtype"]}, not F32");
        int width = (int)entry["shape"]![1]!;
        long start = 8 + headerLength + (long)entry["data_offsets"]![0]! + (long)token * width * sizeof(float);
        for (int i = 0; i < width; i++)
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)(start + i * sizeof(float)), sizeof(float)), value);
        File.WriteAllBytes(weights, bytes);
        return token;
    }
}
