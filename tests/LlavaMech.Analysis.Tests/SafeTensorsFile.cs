using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Analysis.Tests;

/// <summary>Minimal safetensors reader: 8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, data.</summary>
public static class SafeTensorsFile
{
    /// <summary>Every tensor of the file (F32, F16, BF16, I64), in its stored dtype, detached from dispose scopes.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        var bytes = File.ReadAllBytes(path);
        long headerLen = BitConverter.ToInt64(bytes, 0);
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLen));
        long dataStart = 8 + headerLen;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var prop in header.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__") continue;
            var dtype = prop.Value.GetProperty("dtype").GetString()!;
            var shape = prop.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offs = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var span = new ReadOnlySpan<byte>(bytes, (int)(dataStart + offs[0]), (int)(offs[1] - offs[0]));
            Tensor t = dtype switch
            {
                "F32" => tensor(MemoryMarshal.Cast<byte, float>(span).ToArray(), shape),
                "F64" => tensor(MemoryMarshal.Cast<byte, double>(span).ToArray(), shape),
                "F16" => tensor(MemoryMarshal.Cast<byte, Half>(span).ToArray(), shape),
                "I64" => tensor(MemoryMarshal.Cast<byte, long>(span).ToArray(), shape),
                "I32" => tensor(MemoryMarshal.Cast<byte, int>(span).ToArray(), shape),
                "BF16" => BFloat16(span, shape),
                _ => throw new NotSupportedException($"{path}: dtype {dtype} of {prop.Name}"),
            };
            result[prop.Name] = t.DetachFromDisposeScope();
        }
        return result;
    }

    private static Tensor BFloat16(ReadOnlySpan<byte> span, long[] shape)
    {
        var raw = MemoryMarshal.Cast<byte, ushort>(span);
        var f = new float[raw.Length];
        for (int i = 0; i < raw.Length; i++) f[i] = BitConverter.Int32BitsToSingle(raw[i] << 16);
        return tensor(f, shape).to(ScalarType.BFloat16);
    }
}
