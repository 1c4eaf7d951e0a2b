using System.Buffers.Binary;

namespace LlavaMech.Processing;

/// <summary>
/// Says what is wrong with the start of a file that has the PNG signature but that the decoder refused: a missing
/// or short IHDR chunk, a CRC mismatch, a zero size. The decoder itself only says "invalid input".
/// </summary>
public static class PngHeader
{
    private static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>The problem of a PNG's signature and IHDR chunk ("PNG name: IHDR chunk CRC mismatch ..."), or null when they are sound or the bytes are no PNG.</summary>
    public static string? Problem(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.Length < Signature.Length || !bytes[..Signature.Length].SequenceEqual(Signature)) return null;
        var rest = bytes[Signature.Length..];
        if (rest.Length < 8) return $"PNG {name}: truncated after the signature (no IHDR chunk)";
        uint length = BinaryPrimitives.ReadUInt32BigEndian(rest);
        var type = rest.Slice(4, 4);
        if (!type.SequenceEqual("IHDR"u8)) return $"PNG {name}: the first chunk is '{System.Text.Encoding.ASCII.GetString(type)}', not IHDR";
        if (length != 13) return $"PNG {name}: IHDR chunk is {length} bytes long, not 13";
        if (rest.Length < 8 + 13 + 4) return $"PNG {name}: IHDR chunk is truncated";
        uint stored = BinaryPrimitives.ReadUInt32BigEndian(rest.Slice(8 + 13, 4));
        uint computed = Crc32(rest.Slice(4, 4 + 13));
        if (stored != computed) return $"PNG {name}: IHDR chunk CRC mismatch (stored 0x{stored:x8}, computed 0x{computed:x8}): the file is corrupt";
        uint w = BinaryPrimitives.ReadUInt32BigEndian(rest.Slice(8, 4)), h = BinaryPrimitives.ReadUInt32BigEndian(rest.Slice(12, 4));
        if (w == 0 || h == 0 || w > int.MaxValue || h > int.MaxValue) return $"PNG {name}: IHDR gives an invalid size {w}x{h}";
        return null;
    }

    private static readonly uint[] Table = BuildTable();

    private static uint[] BuildTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }

    /// <summary>The CRC-32 of PNG chunks (ISO 3309, as zlib's crc32).</summary>
    public static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in data) c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
