using System.Security.Cryptography;

namespace LlavaMech.Datasets.Manifest;

/// <summary>
/// What a manifest read accepts. <see cref="MaxLineBytes"/> bounds the memory one line may take (a longer line is
/// rejected without being held); <see cref="ImageRoots"/> are folders outside the manifest's folder where absolute
/// image paths, and the targets of symbolic links, may lie.
/// </summary>
public sealed record ManifestLimits(long MaxLineBytes = ManifestLimits.DefaultMaxLineBytes, IReadOnlyList<string>? ImageRoots = null)
{
    /// <summary>1 MiB: a prompt of a model's whole context (4096 tokens of at most ~16 characters, JSON-escaped) fits many times.</summary>
    public const long DefaultMaxLineBytes = 1L << 20;

    /// <summary>Largest accepted <see cref="MaxLineBytes"/> (one line is held in one array).</summary>
    public const long MaxMaxLineBytes = 1L << 30;

    public static ManifestLimits Default { get; } = new();

    public void Validate()
    {
        if (MaxLineBytes < 64 || MaxLineBytes > MaxMaxLineBytes)
            throw new ArgumentException($"max line bytes must be 64 to {MaxMaxLineBytes}, got {MaxLineBytes}");
        foreach (var r in ImageRoots ?? [])
            if (string.IsNullOrWhiteSpace(r)) throw new ArgumentException("an image root is empty");
    }
}

/// <summary>The manifest is not a JSON Lines text file at all (e.g. a NUL byte); the message names the file and line.</summary>
public sealed class ManifestFormatException(string message) : IOException(message);

/// <summary>The manifest's folder and the user's image roots, each as written (full) and with its links resolved.</summary>
internal sealed class ImageRoots
{
    private ImageRoots(string datasetReal, IReadOnlyList<(string Full, string Real)> roots)
    {
        DatasetReal = datasetReal;
        Roots = roots;
    }

    public string DatasetReal { get; }
    public IReadOnlyList<(string Full, string Real)> Roots { get; }

    public static ImageRoots Create(string datasetDir, IReadOnlyList<string>? roots) =>
        new(ManifestReader.RealPath(datasetDir),
            (roots ?? []).Select(r => Path.GetFullPath(r)).Select(f => (f, ManifestReader.RealPath(f))).ToList());

    /// <summary>An absolute image path as written must lie under a named root.</summary>
    public bool ContainsLexically(string fullPath) => Roots.Any(r => ManifestReader.IsUnder(fullPath, r.Full));

    /// <summary>The file an image path leads to (links resolved) must lie under the dataset folder or a named root.</summary>
    public bool ContainsReal(string realPath) =>
        ManifestReader.IsUnder(realPath, DatasetReal) || Roots.Any(r => ManifestReader.IsUnder(realPath, r.Real));
}

/// <summary>One line of a <see cref="BoundedLineReader"/>.</summary>
/// <param name="Number">1-based line number.</param>
/// <param name="Bytes">The line without its '\n' (all of it, or its first bytes when <paramref name="Truncated"/>).</param>
/// <param name="Length">The whole line's length in bytes.</param>
/// <param name="Truncated">The line was longer than the limit: only a prefix is in <paramref name="Bytes"/>.</param>
/// <param name="Sha256">SHA-256 of the whole line (hex), computed while streaming; only for truncated lines.</param>
/// <param name="NulAt">Byte offset of the first NUL byte in the line, if any (reading stops there).</param>
internal sealed record ManifestLine(int Number, ReadOnlyMemory<byte> Bytes, long Length, bool Truncated, string? Sha256, long? NulAt);

/// <summary>
/// Splits a stream into '\n'-terminated lines while holding at most <c>maxLineBytes</c> of one line: the bytes of a
/// longer line past its first <see cref="ManifestReader.KeptPrefixBytes"/> are only hashed and counted. Hashes the
/// whole stream as it goes (<see cref="FileSha256"/>). A NUL byte ends reading at once (binary input).
/// </summary>
internal sealed class BoundedLineReader(Stream stream, long maxLineBytes) : IDisposable
{
    private readonly byte[] _buffer = new byte[1 << 16];
    private readonly IncrementalHash _file = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly MemoryStream _line = new();
    private int _pos, _len;
    private int _number;
    private bool _eof;

    public ManifestLine? Next()
    {
        if (_eof && _pos >= _len) return null;
        _line.SetLength(0);
        long length = 0;
        IncrementalHash? lineHash = null;
        bool any = false;
        while (true)
        {
            if (_pos >= _len)
            {
                _len = stream.Read(_buffer, 0, _buffer.Length);
                _pos = 0;
                if (_len == 0)
                {
                    _eof = true;
                    if (!any) return null;
                    break;
                }
                _file.AppendData(_buffer, 0, _len);
            }
            any = true;
            var span = _buffer.AsSpan(_pos, _len - _pos);
            int nl = span.IndexOf((byte)'\n');
            var chunk = nl >= 0 ? span[..nl] : span;
            int nul = chunk.IndexOf((byte)0);
            if (nul >= 0)
            {
                _eof = true;
                _pos = _len;
                return new ManifestLine(++_number, ReadOnlyMemory<byte>.Empty, length + nul, false, null, length + nul);
            }
            Append(chunk, length, ref lineHash);
            length += chunk.Length;
            _pos += nl >= 0 ? nl + 1 : chunk.Length;
            if (nl >= 0) break;
        }
        _number++;
        bool truncated = length > maxLineBytes;
        string? sha = null;
        if (lineHash is not null)
        {
            sha = Convert.ToHexStringLower(lineHash.GetHashAndReset());
            lineHash.Dispose();
        }
        return new ManifestLine(_number, new ReadOnlyMemory<byte>(_line.GetBuffer(), 0, (int)_line.Length), length, truncated, sha, null);
    }

    /// <summary>Keeps the bytes while the line is within the limit; past it, only a prefix is kept and the rest hashed.</summary>
    private void Append(ReadOnlySpan<byte> chunk, long lengthBefore, ref IncrementalHash? lineHash)
    {
        if (lineHash is null && lengthBefore + chunk.Length <= maxLineBytes)
        {
            _line.Write(chunk);
            return;
        }
        if (lineHash is null)
        {
            // Over the limit: hash what is held, keep only its prefix.
            lineHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            lineHash.AppendData(_line.GetBuffer(), 0, (int)_line.Length);
            _line.SetLength(Math.Min(_line.Length, ManifestReader.KeptPrefixBytes));
        }
        lineHash.AppendData(chunk);
        int room = ManifestReader.KeptPrefixBytes - (int)_line.Length;
        if (room > 0) _line.Write(chunk[..Math.Min(room, chunk.Length)]);
    }

    /// <summary>SHA-256 (hex) of every byte read; call after the last line.</summary>
    public string FileSha256() => Convert.ToHexStringLower(_file.GetHashAndReset());

    public void Dispose()
    {
        _file.Dispose();
        _line.Dispose();
    }
}
