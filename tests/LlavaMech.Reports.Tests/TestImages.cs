using SkiaSharp;

namespace LlavaMech.Reports.Tests;

/// <summary>A per-test temp folder plus helpers to decode the written PNGs and compare colours.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("llavamech-reports-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

internal static class Png
{
    /// <summary>Decodes a PNG written by the code under test; fails the test if it is not a PNG.</summary>
    public static SKBitmap Load(string path)
    {
        Assert.True(System.IO.File.Exists(path), "missing " + path);
        var bytes = System.IO.File.ReadAllBytes(path);
        Assert.True(bytes.Length > 8 && bytes[0] == 0x89 && bytes[1] == (byte)'P' && bytes[2] == (byte)'N' && bytes[3] == (byte)'G', "not a PNG: " + path);
        return SKBitmap.Decode(bytes) ?? throw new Xunit.Sdk.XunitException("could not decode " + path);
    }

    public static void Close(SKColor expected, SKColor actual, int tolerance, string what = "")
    {
        bool ok = Math.Abs(expected.Red - actual.Red) <= tolerance
                  && Math.Abs(expected.Green - actual.Green) <= tolerance
                  && Math.Abs(expected.Blue - actual.Blue) <= tolerance;
        Assert.True(ok, $"{what}: expected ~{expected} (±{tolerance}), got {actual}");
    }

    /// <summary>Redness minus blueness: larger = warmer on the jet / blue-white-red scales.</summary>
    public static int Warmth(SKColor c) => c.Red - c.Blue;

    public static bool IsNear(SKColor a, SKColor b, int tolerance) =>
        Math.Abs(a.Red - b.Red) <= tolerance && Math.Abs(a.Green - b.Green) <= tolerance && Math.Abs(a.Blue - b.Blue) <= tolerance;

    public static SKColor ToSk(ScottPlot.Color c) => new(c.R, c.G, c.B);

    /// <summary>Whether some pixel within <paramref name="radius"/> of (x, y) is close to <paramref name="color"/>.</summary>
    public static bool AnyNear(SKBitmap bmp, float x, float y, int radius, SKColor color, int tolerance)
    {
        for (int dy = -radius; dy <= radius; dy++)
            for (int dx = -radius; dx <= radius; dx++)
            {
                int px = (int)MathF.Round(x) + dx, py = (int)MathF.Round(y) + dy;
                if (px < 0 || py < 0 || px >= bmp.Width || py >= bmp.Height) continue;
                if (IsNear(bmp.GetPixel(px, py), color, tolerance)) return true;
            }
        return false;
    }

    /// <summary>[h, w, 3] uint8 filled with one colour.</summary>
    public static byte[] Solid(int h, int w, byte r, byte g, byte b)
    {
        var px = new byte[h * w * 3];
        for (int i = 0; i < px.Length; i += 3) { px[i] = r; px[i + 1] = g; px[i + 2] = b; }
        return px;
    }
}
