using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints;

/// <summary>
/// Writes safetensors files that the Hugging Face loaders accept: 8-byte-aligned header, "format": "pt"
/// metadata, and for sharded sets the model-0000k-of-0000n names plus an index with sorted keys.
/// </summary>
public static class SafetensorsWriter
{
    private const long ChunkBytes = 1L << 30;

    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors,
        SafetensorsDType? storeAs = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, _) in list)
        {
            if (string.IsNullOrEmpty(name) || name == "__metadata__")
                throw new ArgumentException($"'{name}' cannot be a tensor name", nameof(tensors));
            if (!seen.Add(name))
                throw new ArgumentException($"tensor '{name}' is given twice", nameof(tensors));
        }

        var dtypes = list.Select(t => storeAs ?? SafetensorsDTypes.FromScalarType(t.Tensor.dtype)).ToList();
        var header = BuildHeader(list, dtypes, metadata);

        path = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        // A crash mid-write must not leave a half file under the real name for the next Open to trip on.
        var tmp = path + ".tmp";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> len = stackalloc byte[8];
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
                fs.Write(len);
                fs.Write(header);
                for (int i = 0; i < list.Count; i++)
                    WriteData(fs, list[i].Tensor, dtypes[i]);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            if (File.Exists(tmp)) File.Delete(tmp);
            throw;
        }
    }

    /// <summary>
    /// Splits the tensors, in the given order, into <paramref name="shards"/> files of about equal size.
    /// One shard is written as model.safetensors without an index, as Hugging Face does.
    /// Earlier weight files in modelDir are removed so Checkpoint.Open cannot pick up a stale one.
    /// </summary>
    public static void WriteSharded(string modelDir, IEnumerable<(string Name, Tensor Tensor)> tensors, int shards,
        SafetensorsDType? storeAs = null)
    {
        var list = tensors.ToList();
        if (shards < 1) throw new ArgumentOutOfRangeException(nameof(shards), shards, "need at least one shard");
        if (shards > list.Count)
            throw new ArgumentException($"cannot split {list.Count} tensors into {shards} non-empty shards", nameof(shards));

        Directory.CreateDirectory(modelDir);
        foreach (var stale in Directory.EnumerateFiles(modelDir, "model*.safetensors*"))
        {
            var n = Path.GetFileName(stale);
            if (n is Checkpoint.SingleFileName or Checkpoint.IndexFileName ||
                System.Text.RegularExpressions.Regex.IsMatch(n, @"^model-\d{5}-of-\d{5}\.safetensors$"))
                File.Delete(stale);
        }

        if (shards == 1)
        {
            Write(Path.Combine(modelDir, Checkpoint.SingleFileName), list, storeAs);
            return;
        }

        var sizes = list.Select(t => t.Tensor.numel() * SafetensorsDTypes.SizeOf(storeAs ?? SafetensorsDTypes.FromScalarType(t.Tensor.dtype))).ToList();
        var groups = Partition(sizes, shards);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        int start = 0;
        for (int s = 0; s < shards; s++)
        {
            var file = $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
            var part = list.GetRange(start, groups[s]);
            Write(Path.Combine(modelDir, file), part, storeAs);
            foreach (var (name, _) in part) weightMap[name] = file;
            start += groups[s];
        }

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteNumber("total_size", sizes.Sum());
            w.WriteEndObject();
            w.WriteStartObject("weight_map");
            foreach (var (k, v) in weightMap) w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        File.WriteAllBytes(Path.Combine(modelDir, Checkpoint.IndexFileName), [.. ms.ToArray(), (byte)'\n']);
    }

    /// <summary>Contiguous groups with about total/shards bytes each, none empty.</summary>
    private static int[] Partition(IReadOnlyList<long> sizes, int shards)
    {
        var counts = new int[shards];
        double total = sizes.Sum();
        long cum = 0;
        int i = 0;
        for (int s = 0; s < shards; s++)
        {
            int mustLeave = shards - s - 1;
            double target = total * (s + 1) / shards;
            do
            {
                cum += sizes[i++];
                counts[s]++;
            } while (i < sizes.Count - mustLeave && (s == shards - 1 || cum + sizes[i] / 2.0 <= target));
        }
        return counts;
    }

    private static byte[] BuildHeader(List<(string Name, Tensor Tensor)> list, List<SafetensorsDType> dtypes,
        IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            // transformers refuses files whose metadata lacks a known format.
            if (metadata is null || !metadata.ContainsKey("format")) w.WriteString("format", "pt");
            if (metadata is not null)
                foreach (var (k, v) in metadata) w.WriteString(k, v);
            w.WriteEndObject();
            long offset = 0;
            for (int i = 0; i < list.Count; i++)
            {
                var t = list[i].Tensor;
                long bytes = t.numel() * SafetensorsDTypes.SizeOf(dtypes[i]);
                w.WriteStartObject(list[i].Name);
                w.WriteString("dtype", dtypes[i].ToString());
                w.WriteStartArray("shape");
                foreach (var d in t.shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        var json = ms.ToArray();
        int pad = (int)((8 - json.Length % 8) % 8);
        return [.. json, .. Encoding.ASCII.GetBytes(new string(' ', pad))];
    }

    private static void WriteData(Stream fs, Tensor t, SafetensorsDType dtype)
    {
        if (t.numel() == 0) return;
        using var detached = t.detach();
        using var converted = detached.to(SafetensorsDTypes.ToScalarType(dtype), CPU);
        using var contiguous = converted.contiguous();
        using var flat = contiguous.view(-1);
        long elem = SafetensorsDTypes.SizeOf(dtype);
        long perChunk = ChunkBytes / elem;
        long n = flat.shape[0];
        for (long start = 0; start < n; start += perChunk)
        {
            using var part = flat.narrow(0, start, Math.Min(perChunk, n - start));
            fs.Write(part.bytes);
        }
    }
}
