using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace LlavaMech.Checkpoints.Tests;

/// <summary>A scratch directory removed after the test, so corrupt copies never outlive it.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "llavamech-ckpt-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string Sub(string name)
    {
        var d = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(d);
        return d;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Byte-level edits of safetensors copies: the only way to produce the corrupt files a reader must reject.</summary>
public static class SafetensorsBytes
{
    public static (string Header, byte[] Data) Split(string path)
    {
        var b = System.IO.File.ReadAllBytes(path);
        var n = (int)BinaryPrimitives.ReadUInt64LittleEndian(b);
        return (Encoding.UTF8.GetString(b, 8, n), b[(8 + n)..]);
    }

    public static void Join(string path, byte[] header, byte[] data)
    {
        var len = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
        System.IO.File.WriteAllBytes(path, [.. len, .. header, .. data]);
    }

    /// <summary>Rewrites the header text (fixing the length prefix), leaving the data untouched.</summary>
    public static void EditHeader(string path, Func<string, string> edit)
    {
        var (h, d) = Split(path);
        var edited = edit(h);
        Assert.NotEqual(h, edited); // an edit that misses its target would make the test vacuous
        Join(path, Encoding.UTF8.GetBytes(edited), d);
    }

    public static void EditJson(string path, Action<JsonObject> edit) =>
        EditHeader(path, h =>
        {
            var o = JsonNode.Parse(h)!.AsObject();
            edit(o);
            return o.ToJsonString();
        });

    public static string ReplaceFirst(string s, string find, string with)
    {
        int i = s.IndexOf(find, StringComparison.Ordinal);
        Assert.True(i >= 0, $"'{find}' not in header");
        return s[..i] + with + s[(i + find.Length)..];
    }

    /// <summary>Removes a tensor's header entry and its bytes, moving the later tensors down: a valid file without it.</summary>
    public static void RemoveTensor(string path, string name)
    {
        var (h, data) = Split(path);
        var o = JsonNode.Parse(h)!.AsObject();
        var offsets = o[name]!["data_offsets"]!.AsArray();
        long begin = (long)offsets[0]!, end = (long)offsets[1]!;
        o.Remove(name);
        foreach (var (key, node) in o)
        {
            if (key == "__metadata__") continue;
            var off = node!["data_offsets"]!.AsArray();
            long b = (long)off[0]!, e = (long)off[1]!;
            if (b >= end) { off[0] = b - (end - begin); off[1] = e - (end - begin); }
        }
        Join(path, Encoding.UTF8.GetBytes(o.ToJsonString()), [.. data[..(int)begin], .. data[(int)end..]]);
    }

    public static void SetHeaderLength(string path, ulong length)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Write);
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, length);
        fs.Write(b);
    }
}

public static class TensorAssert
{
    /// <summary>Same dtype, shape and every element (TorchSharp's equal() is elementwise, not torch.equal).</summary>
    public static bool Same(TorchSharp.torch.Tensor a, TorchSharp.torch.Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }
}
