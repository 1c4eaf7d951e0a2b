using System.Buffers.Binary;
using System.Text.Json;

namespace LlavaMech.Processing.Tests;

/// <summary>Minimal safetensors reader for the goldens: 8-byte little-endian header length, JSON header, data.</summary>
internal sealed class Safetensors
{
    private readonly byte[] _bytes;
    private readonly long _dataStart;
    private readonly Dictionary<string, (string Dtype, long[] Shape, long Begin, long End)> _tensors = new();

    public Safetensors(string path)
    {
        _bytes = File.ReadAllBytes(path);
        long n = BinaryPrimitives.ReadInt64LittleEndian(_bytes.AsSpan(0, 8));
        _dataStart = 8 + n;
        using var doc = JsonDocument.Parse(_bytes.AsMemory(8, (int)n));
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") continue;
            var offs = p.Value.GetProperty("data_offsets");
            _tensors[p.Name] = (p.Value.GetProperty("dtype").GetString()!,
                p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray(),
                offs[0].GetInt64(), offs[1].GetInt64());
        }
    }

    public bool Has(string name) => _tensors.ContainsKey(name);

    public long[] Shape(string name) => _tensors[name].Shape;

    public long[] I64(string name)
    {
        var t = _tensors[name];
        Assert.Equal("I64", t.Dtype);
        var span = _bytes.AsSpan((int)(_dataStart + t.Begin), (int)(t.End - t.Begin));
        var r = new long[span.Length / 8];
        for (int i = 0; i < r.Length; i++) r[i] = BinaryPrimitives.ReadInt64LittleEndian(span.Slice(i * 8, 8));
        return r;
    }

    public float[] F32(string name)
    {
        var t = _tensors[name];
        Assert.Equal("F32", t.Dtype);
        var span = _bytes.AsSpan((int)(_dataStart + t.Begin), (int)(t.End - t.Begin));
        var r = new float[span.Length / 4];
        for (int i = 0; i < r.Length; i++) r[i] = BinaryPrimitives.ReadSingleLittleEndian(span.Slice(i * 4, 4));
        return r;
    }
}
