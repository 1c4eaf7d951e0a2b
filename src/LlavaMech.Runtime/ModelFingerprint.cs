using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LlavaMech.Checkpoints;

namespace LlavaMech.Runtime;

/// <summary>
/// A model's identity for the output tables (<c>model_fingerprint</c>) and for the commit protocol, which refuses to
/// mix two models in one output location. SHA-256 (lowercase hex) over, in this order:
/// <list type="number">
/// <item><c>config.json</c>'s bytes;</item>
/// <item>for every safetensors file (the single <c>model.safetensors</c>, or the index and its shards in name order):
/// the file name, its size, its 8-byte header length and JSON header (names, dtypes, shapes, offsets, metadata),
/// 4 KiB sampled at each end of its data section, and for every tensor (in name order) 256 bytes at the start, the
/// middle and the end of its data.</item>
/// </list>
/// The headers alone would give two fine-tunes of one architecture the same fingerprint (same names, shapes and
/// offsets), so that a resumed run (or a reanalysis, whose run id is the fingerprint) could silently continue another
/// model's output. The per-tensor samples see any change that touches a whole tensor (fine-tuning, a merged adapter,
/// a rescaled layer) wherever the tensor lies in the file; a change confined to a few weights away from the samples
/// is not seen (hash the files for that). Cost: three small positional reads per tensor, milliseconds for a 7B model.
/// </summary>
public static class ModelFingerprint
{
    public const int SampleBytes = 4096;

    /// <summary>Bytes sampled at the start, middle and end of each tensor's data.</summary>
    public const int TensorSampleBytes = 256;

    /// <summary>The fingerprint of the checkpoint in <paramref name="modelDir"/>. Throws <see cref="CheckpointException"/> when files are missing or unreadable.</summary>
    public static string Compute(string modelDir)
    {
        string dir = Path.GetFullPath(modelDir);
        string config = Path.Combine(dir, "config.json");
        if (!File.Exists(config)) throw new CheckpointException($"model directory '{dir}' has no config.json");

        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) { sha.AppendData(Encoding.UTF8.GetBytes(s)); sha.AppendData([0]); }
        void Long(long v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteInt64LittleEndian(b, v); sha.AppendData(b); }

        Text("llavamech-fingerprint/2");
        Text("config.json");
        sha.AppendData(File.ReadAllBytes(config));

        foreach (var file in WeightFiles(dir))
        {
            Text(Path.GetFileName(file));
            if (file.EndsWith(".json", StringComparison.Ordinal))
            {
                sha.AppendData(File.ReadAllBytes(file));
                continue;
            }
            using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            long length = RandomAccess.GetLength(handle);
            Long(length);
            if (length < 8) throw new CheckpointException($"safetensors file '{file}' is {length} bytes, too short for a header");
            Span<byte> lenBytes = stackalloc byte[8];
            ReadExactly(handle, lenBytes, 0, file);
            ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
            if (headerLen == 0 || headerLen > SafetensorsFile.MaxHeaderBytes || 8 + (long)headerLen > length)
                throw new CheckpointException($"safetensors file '{file}' has an invalid header length {headerLen} (file size {length})");
            var header = new byte[headerLen];
            ReadExactly(handle, header, 8, file);
            sha.AppendData(lenBytes);
            sha.AppendData(header);

            long dataStart = 8 + (long)headerLen, dataLength = length - dataStart;
            int n = (int)Math.Min(SampleBytes, dataLength);
            var sample = new byte[n];
            ReadExactly(handle, sample, dataStart, file);
            sha.AppendData(sample);
            ReadExactly(handle, sample, length - n, file);
            sha.AppendData(sample);

            foreach (var (begin, end) in TensorRanges(header, file))
            {
                long size = end - begin;
                if (begin < 0 || end > dataLength || size < 0)
                    throw new CheckpointException($"safetensors file '{file}' has a tensor at [{begin}, {end}) outside its {dataLength}-byte data section");
                int m = (int)Math.Min(TensorSampleBytes, size);
                var part = new byte[m];
                foreach (long at in new[] { begin, begin + (size - m) / 2, end - m })
                {
                    ReadExactly(handle, part, dataStart + at, file);
                    sha.AppendData(part);
                }
            }
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>Data offsets of every tensor of a safetensors header, in name order.</summary>
    private static List<(long Begin, long End)> TensorRanges(byte[] header, string file)
    {
        var ranges = new List<(string Name, long Begin, long End)>();
        try
        {
            using var doc = JsonDocument.Parse(header);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__" || p.Value.ValueKind != JsonValueKind.Object) continue;
                if (!p.Value.TryGetProperty("data_offsets", out var o) || o.ValueKind != JsonValueKind.Array || o.GetArrayLength() != 2)
                    throw new CheckpointException($"safetensors file '{file}': tensor '{p.Name}' has no data_offsets [begin, end]");
                ranges.Add((p.Name, o[0].GetInt64(), o[1].GetInt64()));
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new CheckpointException($"safetensors file '{file}' has an invalid JSON header: {e.Message}", e);
        }
        return ranges.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r => (r.Begin, r.End)).ToList();
    }

    /// <summary>The weight files in hashing order: model.safetensors, or the index and the shards it names (sorted).</summary>
    internal static IReadOnlyList<string> WeightFiles(string dir)
    {
        string single = Path.Combine(dir, Checkpoint.SingleFileName);
        if (File.Exists(single)) return [single];
        string index = Path.Combine(dir, Checkpoint.IndexFileName);
        if (!File.Exists(index))
            throw new CheckpointException($"model directory '{dir}' has neither {Checkpoint.SingleFileName} nor {Checkpoint.IndexFileName}");
        var shards = new SortedSet<string>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (doc.RootElement.TryGetProperty("weight_map", out var map) && map.ValueKind == JsonValueKind.Object)
                foreach (var p in map.EnumerateObject())
                    if (p.Value.ValueKind == JsonValueKind.String) shards.Add(p.Value.GetString()!);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"index '{index}' is not valid JSON: {e.Message}", e);
        }
        var files = new List<string> { index };
        foreach (var s in shards)
        {
            if (s != Path.GetFileName(s)) throw new CheckpointException($"index '{index}' names shard '{s}', which is not a plain file name");
            string path = Path.Combine(dir, s);
            if (!File.Exists(path)) throw new CheckpointException($"shard file '{path}' named by '{index}' does not exist");
            files.Add(path);
        }
        return files;
    }

    private static void ReadExactly(Microsoft.Win32.SafeHandles.SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = RandomAccess.Read(handle, buffer[done..], offset + done);
            if (n <= 0) throw new CheckpointException($"unexpected end of file reading '{path}' at offset {offset + done}");
            done += n;
        }
    }
}
