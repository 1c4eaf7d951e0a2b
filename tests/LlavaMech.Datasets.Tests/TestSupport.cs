using System.Text.Json;
using SkiaSharp;

namespace LlavaMech.Datasets.Tests;

/// <summary>A fresh folder under the system temp dir, removed on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "llavamech-ds-" + Guid.NewGuid().ToString("N")[..12]);

    public TempDir() => Directory.CreateDirectory(Path);

    public string File(string rel) => System.IO.Path.Combine(Path, rel);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

internal static class Images
{
    public static void WritePng(string path, int width, int height, SKColor color)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        using var bmp = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        bmp.Erase(color);
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
    }

    public static SKBitmap Decode(string path) =>
        SKBitmap.Decode(path) ?? throw new InvalidOperationException("cannot decode " + path);
}

/// <summary>
/// Minimal BPE over the fixture tokenizer.json (Metaspace "▁", merges by rank, byte fallback),
/// enough to check which words are single pieces. Checked against the fixture's own ids below.
/// </summary>
internal sealed class TinyBpe
{
    public IReadOnlyDictionary<string, int> Vocab { get; }
    private readonly Dictionary<(string, string), int> _ranks = new();

    public TinyBpe(string tokenizerJson)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(tokenizerJson));
        var model = doc.RootElement.GetProperty("model");
        Vocab = model.GetProperty("vocab").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
        int rank = 0;
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            var pair = m.ValueKind == JsonValueKind.Array
                ? (m[0].GetString()!, m[1].GetString()!)
                : (m.GetString()!.Split(' ')[0], m.GetString()!.Split(' ')[1]);
            _ranks.TryAdd(pair, rank++);
        }
    }

    /// <summary>Pieces of text as it appears after a space ("is red" -> "▁is", "▁red").</summary>
    public List<string> Encode(string text)
    {
        var syms = ("▁" + text.Replace(' ', '▁')).Select(c => c.ToString()).ToList();
        while (true)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < syms.Count; i++)
                if (_ranks.TryGetValue((syms[i], syms[i + 1]), out int r) && r < bestRank)
                    (best, bestRank) = (i, r);
            if (best < 0)
                break;
            syms[best] += syms[best + 1];
            syms.RemoveAt(best + 1);
        }
        var pieces = new List<string>();
        foreach (var s in syms)
        {
            if (Vocab.ContainsKey(s))
                pieces.Add(s);
            else
                pieces.AddRange(System.Text.Encoding.UTF8.GetBytes(s).Select(b => $"<0x{b:X2}>"));
        }
        return pieces;
    }

    public List<int> Ids(string text) => Encode(text).Select(p => Vocab[p]).ToList();
}
