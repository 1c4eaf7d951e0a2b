using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints;

public enum SafetensorsDType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL }

/// <summary>One header entry. Begin/End are relative to the start of the data section, as in the file.</summary>
public sealed record TensorEntry(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End, string FilePath)
{
    public long ByteLength => End - Begin;
    public long NumElements => Shapes.CheckedNumel(Shape) ?? -1;
}

public static class SafetensorsDTypes
{
    public static int SizeOf(SafetensorsDType d) => d switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 => 2,
        _ => 1,
    };

    public static ScalarType ToScalarType(SafetensorsDType d) => d switch
    {
        SafetensorsDType.F32 => ScalarType.Float32,
        SafetensorsDType.F16 => ScalarType.Float16,
        SafetensorsDType.BF16 => ScalarType.BFloat16,
        SafetensorsDType.F64 => ScalarType.Float64,
        SafetensorsDType.I64 => ScalarType.Int64,
        SafetensorsDType.I32 => ScalarType.Int32,
        SafetensorsDType.I16 => ScalarType.Int16,
        SafetensorsDType.I8 => ScalarType.Int8,
        SafetensorsDType.U8 => ScalarType.Byte,
        SafetensorsDType.BOOL => ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(d)),
    };

    public static SafetensorsDType FromScalarType(ScalarType t) => t switch
    {
        ScalarType.Float32 => SafetensorsDType.F32,
        ScalarType.Float16 => SafetensorsDType.F16,
        ScalarType.BFloat16 => SafetensorsDType.BF16,
        ScalarType.Float64 => SafetensorsDType.F64,
        ScalarType.Int64 => SafetensorsDType.I64,
        ScalarType.Int32 => SafetensorsDType.I32,
        ScalarType.Int16 => SafetensorsDType.I16,
        ScalarType.Int8 => SafetensorsDType.I8,
        ScalarType.Byte => SafetensorsDType.U8,
        ScalarType.Bool => SafetensorsDType.BOOL,
        _ => throw new ArgumentException($"tensor dtype {t} has no safetensors equivalent supported here"),
    };

    /// <summary>The header spelling is exactly the enum name ("F32", "BF16", "BOOL").</summary>
    public static bool TryParse(string s, out SafetensorsDType d) =>
        Enum.TryParse(s, ignoreCase: false, out d) && Enum.IsDefined(d) && s == d.ToString();
}

/// <summary>
/// A validated safetensors file. Open checks the whole header against the file size before anything is
/// trusted; Read then fetches one tensor at a time with positional reads, so loading never holds more than
/// one raw tensor besides the converted result.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Same cap as the reference implementation: a larger header means a corrupt or hostile file.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    // Reads go through spans over tensor memory; stay well under int.MaxValue per call.
    private const long ChunkBytes = 1L << 30;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, TensorEntry> _tensors;

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart, long dataLength,
        Dictionary<string, TensorEntry> tensors, Dictionary<string, string> metadata)
        => (Path, _handle, DataStart, DataLength, _tensors, Metadata) = (path, handle, dataStart, dataLength, tensors, metadata);

    public string Path { get; }
    /// <summary>Absolute file offset of the data section (8 + header length).</summary>
    public long DataStart { get; }
    public long DataLength { get; }
    /// <summary>Tensors in header order.</summary>
    public IReadOnlyDictionary<string, TensorEntry> Tensors => _tensors;
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafetensorsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"cannot open safetensors file '{path}': {e.Message}", e);
        }
        try
        {
            return Parse(path, handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static SafetensorsFile Parse(string path, SafeFileHandle handle)
    {
        CheckpointException Fail(string detail) => new($"safetensors file '{path}': {detail}");

        if (!BitConverter.IsLittleEndian)
            throw Fail("reading requires a little-endian machine");
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
            throw Fail($"file is {fileLength} bytes, too short for the 8-byte header length; truncated or not a safetensors file");

        Span<byte> lenBytes = stackalloc byte[8];
        ReadExactly(handle, lenBytes, 0, path);
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLen == 0)
            throw Fail("header length is 0; not a safetensors file");
        if (headerLen > MaxHeaderBytes)
            throw Fail($"header length {headerLen} exceeds the {MaxHeaderBytes / 1_000_000} MB limit; corrupt or not a safetensors file");
        if (8 + (long)headerLen > fileLength)
            throw Fail($"header length {headerLen} runs past the end of the file ({fileLength} bytes); the file is truncated or not a safetensors file");

        var header = new byte[headerLen];
        ReadExactly(handle, header, 8, path);
        try
        {
            new UTF8Encoding(false, throwOnInvalidBytes: true).GetCharCount(header);
        }
        catch (DecoderFallbackException e)
        {
            throw new CheckpointException($"safetensors file '{path}': header is not valid UTF-8", e);
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"safetensors file '{path}': header is not valid JSON: {e.Message}", e);
        }

        long dataStart = 8 + (long)headerLen;
        long dataLength = fileLength - dataStart;
        var tensors = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw Fail($"header is not a JSON object (found {doc.RootElement.ValueKind})");
            bool sawMetadata = false;
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (sawMetadata) throw Fail("header has two __metadata__ entries");
                    sawMetadata = true;
                    ParseMetadata(prop.Value, metadata, Fail);
                    continue;
                }
                if (tensors.ContainsKey(prop.Name))
                    throw Fail($"tensor '{prop.Name}' appears twice in the header");
                tensors.Add(prop.Name, ParseEntry(prop.Name, prop.Value, path, dataLength));
            }
        }

        CheckLayout(tensors.Values, path, dataLength);
        return new SafetensorsFile(path, handle, dataStart, dataLength, tensors, metadata);
    }

    private static void ParseMetadata(JsonElement v, Dictionary<string, string> into, Func<string, CheckpointException> fail)
    {
        if (v.ValueKind == JsonValueKind.Null) return;
        if (v.ValueKind != JsonValueKind.Object)
            throw fail($"__metadata__ must be an object of strings, found {v.ValueKind}");
        foreach (var m in v.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw fail($"__metadata__ value '{m.Name}' must be a string, found {m.Value.ValueKind}");
            into[m.Name] = m.Value.GetString()!;
        }
    }

    private static TensorEntry ParseEntry(string name, JsonElement v, string path, long dataLength)
    {
        CheckpointException Fail(string detail) => new($"tensor '{name}' in file '{path}': {detail}");

        if (v.ValueKind != JsonValueKind.Object)
            throw Fail($"header entry must be an object, found {v.ValueKind}");
        if (!v.TryGetProperty("dtype", out var dt)) throw Fail("header entry has no dtype");
        if (!v.TryGetProperty("shape", out var sh)) throw Fail("header entry has no shape");
        if (!v.TryGetProperty("data_offsets", out var off)) throw Fail("header entry has no data_offsets");

        if (dt.ValueKind != JsonValueKind.String) throw Fail($"dtype must be a string, found {dt.ValueKind}");
        var dtypeName = dt.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype))
            throw Fail($"unknown or unsupported dtype '{dtypeName}' (supported: {string.Join(", ", Enum.GetNames<SafetensorsDType>())})");

        if (sh.ValueKind != JsonValueKind.Array) throw Fail($"shape must be an array of integers, found {sh.ValueKind}");
        var shape = new long[sh.GetArrayLength()];
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var dim))
                throw Fail($"shape must be an array of integers, found {sh.GetRawText()}");
            if (dim < 0) throw Fail($"shape {sh.GetRawText()} has a negative dimension");
            shape[k++] = dim;
        }

        if (off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Fail($"data_offsets must be an array of two integers, found {off.GetRawText()}");
        if (off[0].ValueKind != JsonValueKind.Number || !off[0].TryGetInt64(out var begin) ||
            off[1].ValueKind != JsonValueKind.Number || !off[1].TryGetInt64(out var end))
            throw Fail($"data_offsets must be an array of two integers, found {off.GetRawText()}");
        if (begin < 0 || end < 0) throw Fail($"data_offsets [{begin}, {end}] are negative");
        if (begin > end) throw Fail($"data_offsets [{begin}, {end}] begin after they end");

        long? numel = Shapes.CheckedNumel(shape);
        long? expected = null;
        if (numel is { } ne && (Int128)ne * SafetensorsDTypes.SizeOf(dtype) <= long.MaxValue)
            expected = ne * SafetensorsDTypes.SizeOf(dtype);
        if (expected is null) throw Fail($"shape {Shapes.Format(shape)} is too large");
        if (end - begin != expected)
            throw Fail($"data_offsets [{begin}, {end}] hold {end - begin} bytes but dtype {dtype} with shape " +
                       $"{Shapes.Format(shape)} needs {expected} bytes");
        if (end > dataLength)
            throw Fail($"data_offsets [{begin}, {end}] end beyond the data section ({dataLength} bytes); the file is truncated");

        return new TensorEntry(name, dtype, shape, begin, end, path);
    }

    /// <summary>
    /// The data section must be exactly the tensors' bytes, as the reference implementation requires: no two tensors
    /// share a byte, and no byte (before the first tensor, between two, or after the last) belongs to no tensor.
    /// Bytes outside every tensor are never read, so a file with them is corrupt, hand-edited or hiding something.
    /// </summary>
    private static void CheckLayout(IEnumerable<TensorEntry> entries, string path, long dataLength)
    {
        // Empty tensors occupy no bytes and may share an offset with anything.
        var sorted = entries.Where(e => e.End > e.Begin).OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            var a = sorted[i - 1];
            var b = sorted[i];
            if (b.Begin < a.End)
                throw new CheckpointException(
                    $"tensors '{a.Name}' [{a.Begin}, {a.End}] and '{b.Name}' [{b.Begin}, {b.End}] in file '{path}' overlap");
            if (b.Begin > a.End)
                throw new CheckpointException(
                    $"safetensors file '{path}': {b.Begin - a.End} bytes between tensors '{a.Name}' [{a.Begin}, {a.End}] and " +
                    $"'{b.Name}' [{b.Begin}, {b.End}] belong to no tensor (a gap in the data section)");
        }
        if (sorted.Count > 0 && sorted[0].Begin > 0)
            throw new CheckpointException(
                $"safetensors file '{path}': the first {sorted[0].Begin} bytes of the data section, before tensor '{sorted[0].Name}' " +
                $"[{sorted[0].Begin}, {sorted[0].End}], belong to no tensor (a gap in the data section)");
        long used = sorted.Count == 0 ? 0 : sorted[^1].End;
        if (used < dataLength)
            throw new CheckpointException(
                $"safetensors file '{path}': {dataLength - used} trailing bytes after the last tensor" +
                (sorted.Count == 0 ? "" : $" '{sorted[^1].Name}' [{sorted[^1].Begin}, {sorted[^1].End}]") +
                $" belong to no tensor (data section {dataLength} bytes)");
    }

    /// <summary>
    /// Reads one tensor and converts it (exactly, for F16/BF16 -> F32) to <paramref name="dtype"/> on
    /// <paramref name="device"/> (CPU when null).
    /// </summary>
    public Tensor Read(string name, ScalarType dtype, Device? device = null)
    {
        if (!_tensors.TryGetValue(name, out var e))
            throw new CheckpointException($"tensor '{name}' not found in file '{Path}'");
        var raw = ReadRaw(e);
        try
        {
            return raw.to(dtype, device ?? CPU);
        }
        finally
        {
            // to() hands back a new wrapper even when nothing changes, so the raw one is always ours to free.
            raw.Dispose();
        }
    }

    /// <summary>The tensor exactly as stored (file dtype, CPU).</summary>
    public Tensor ReadRaw(string name)
    {
        if (!_tensors.TryGetValue(name, out var e))
            throw new CheckpointException($"tensor '{name}' not found in file '{Path}'");
        return ReadRaw(e);
    }

    private Tensor ReadRaw(TensorEntry e)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        var t = empty(e.Shape, SafetensorsDTypes.ToScalarType(e.DType), CPU);
        try
        {
            if (e.ByteLength == 0) return t;
            using var flat = t.view(-1);
            long elem = SafetensorsDTypes.SizeOf(e.DType);
            long perChunk = ChunkBytes / elem;
            long n = flat.shape[0];
            for (long start = 0; start < n; start += perChunk)
            {
                long count = Math.Min(perChunk, n - start);
                using var part = flat.narrow(0, start, count);
                var span = part.bytes; // writable view of the tensor's own memory: no staging copy
                ReadExactly(_handle, span, DataStart + e.Begin + start * elem, Path, e.Name);
                if (e.DType == SafetensorsDType.BOOL)
                    foreach (var b in span)
                        if (b > 1)
                            throw new CheckpointException($"tensor '{e.Name}' in file '{Path}': BOOL data holds byte {b}, expected 0 or 1");
            }
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    private static void ReadExactly(SafeFileHandle h, Span<byte> into, long offset, string path, string? tensor = null)
    {
        while (into.Length > 0)
        {
            int got = RandomAccess.Read(h, into, offset);
            if (got <= 0)
            {
                // Open checked the size, so this is a file that shrank underneath us.
                var what = tensor is null ? "" : $"tensor '{tensor}' in ";
                throw new CheckpointException($"{what}file '{path}': unexpected end of file at offset {offset}; the file is truncated");
            }
            into = into[got..];
            offset += got;
        }
    }

    public void Dispose() => _handle.Dispose();
}
