using System.Globalization;
using System.Text;
using System.Text.Json;
using SkiaSharp;

namespace LlavaMech.Datasets.Manifest;

/// <summary>
/// Reads a JSON Lines dataset manifest (spec: datasets/README.md). A bad line becomes a
/// <see cref="ManifestReject"/> naming every problem found on it; only an unreadable manifest
/// file throws.
/// </summary>
public static class ManifestReader
{
    /// <summary>Slack for object_box against the image size: COCO boxes are floats.</summary>
    internal const double BoxTolerancePx = 0.5;

    public static ManifestReadResult Read(string manifestPath) => Read(manifestPath, null);

    /// <summary>
    /// Reads the manifest as a stream of bytes, one line at a time, holding at most
    /// <see cref="ManifestLimits.MaxLineBytes"/> of one line in memory: a longer line becomes a reject (its prefix,
    /// full length and SHA-256 are kept, the rest is only hashed), a line that is not UTF-8 becomes a reject naming
    /// the byte, and a NUL byte (a binary file, /dev/zero) fails the whole read at once with a
    /// <see cref="ManifestFormatException"/> naming the file and line.
    /// </summary>
    public static ManifestReadResult Read(string manifestPath, ManifestLimits? limits)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(manifestPath);
        limits ??= ManifestLimits.Default;
        limits.Validate();
        string fullPath = Path.GetFullPath(manifestPath);
        string dir = Path.GetDirectoryName(fullPath)!;
        var examples = new List<ManifestExample>();
        var rejects = new List<ManifestReject>();
        var firstLineOfId = new Dictionary<string, int>(StringComparer.Ordinal);
        var roots = ImageRoots.Create(dir, limits.ImageRoots);
        // Lines that are not JSON objects before the first one that is: a file that starts this way is not a manifest
        // (/etc/passwd, a secret, a CSV), and none of it may reach the rejects table.
        int notJsonLead = 0;
        string? firstNotJson = null;

        string fileSha;
        try
        {
            using var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            using var lines = new BoundedLineReader(stream, limits.MaxLineBytes);
            while (lines.Next() is { } line)
            {
                int lineNo = line.Number;
                if (line.NulAt is long nul)
                    throw new ManifestFormatException(
                        $"manifest '{manifestPath}' line {lineNo}: NUL byte at column {nul + 1}: not a JSON Lines text file");
                if (line.Truncated)
                {
                    rejects.Add(new ManifestReject(lineNo,
                        $"line is {line.Length} bytes, longer than the limit of {limits.MaxLineBytes} bytes (--max-line-bytes)",
                        Utf8Prefix(line.Bytes.Span)) { RawBytes = line.Length, RawSha256 = line.Sha256 });
                    continue;
                }
                var text = line.Bytes.Span;
                if (lineNo == 1 && text.StartsWith(Utf8Bom)) text = text[Utf8Bom.Length..];
                string raw;
                try
                {
                    raw = StrictUtf8.GetString(text);
                }
                catch (DecoderFallbackException e)
                {
                    int at = e.Index >= 0 ? e.Index : 0;
                    string bytes = e.BytesUnknown is { Length: > 0 } b ? string.Join(" ", b.Select(x => $"0x{x:X2}")) : "?";
                    rejects.Add(new ManifestReject(lineNo,
                        $"not valid UTF-8: byte {bytes} at byte column {at + 1} (save the manifest as UTF-8; Latin-1 and other encodings are not read)",
                        Utf8Prefix(line.Bytes.Span)) { RawBytes = line.Length, RawSha256 = Sha256Hex(line.Bytes.Span) });
                    if (notJsonLead >= 0 && ++notJsonLead == 1) firstNotJson = $"line {lineNo}: not valid UTF-8";
                    if (notJsonLead >= NotAManifestLines) throw NotAManifest(manifestPath, notJsonLead, firstNotJson!);
                    continue;
                }
                raw = raw.TrimEnd('\r');
                if (string.IsNullOrWhiteSpace(raw))
                    continue;
                var problems = new List<string>();
                var example = ParseLine(raw, lineNo, dir, roots, firstLineOfId, problems, out bool jsonObject);
                if (notJsonLead >= 0)
                {
                    if (jsonObject) notJsonLead = -1;   // a JSON object: a manifest, whatever its other lines
                    else if (++notJsonLead == 1) firstNotJson = $"line {lineNo}: {problems.FirstOrDefault()}";
                    if (notJsonLead >= NotAManifestLines) throw NotAManifest(manifestPath, notJsonLead, firstNotJson!);
                }
                if (example != null && problems.Count == 0)
                    examples.Add(example with { RawLine = raw });
                else
                    rejects.Add(new ManifestReject(lineNo, string.Join("; ", problems), raw.Length <= KeptPrefixBytes ? raw : raw[..KeptPrefixBytes])
                        { RawBytes = line.Length, RawSha256 = Sha256Hex(line.Bytes.Span) });
            }
            if (notJsonLead > 0 && examples.Count == 0 && rejects.Count == notJsonLead) throw NotAManifest(manifestPath, notJsonLead, firstNotJson!);
            fileSha = lines.FileSha256();
        }
        catch (Exception e) when (e is IOException and not ManifestFormatException or UnauthorizedAccessException)
        {
            throw new IOException($"Cannot read dataset manifest '{manifestPath}': {e.Message}", e);
        }

        return new ManifestReadResult(fullPath, examples, rejects) { Sha256 = fileSha };
    }

    /// <summary>A file whose first this many non-blank lines are not JSON objects is refused whole.</summary>
    public const int NotAManifestLines = 3;

    private static ManifestFormatException NotAManifest(string path, int lines, string first) => new(
        $"manifest '{path}' is not a JSON Lines manifest: its first {(lines == 1 ? "line is" : $"{lines} lines are")} not JSON objects ({first}); " +
        "nothing of it is read or stored");

    private static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Bytes kept of a line that is not stored whole (over the limit, or not UTF-8): enough for any reject's raw prefix.</summary>
    internal const int KeptPrefixBytes = 1024;

    /// <summary>The valid UTF-8 text at the start of <paramref name="bytes"/> (at most <see cref="KeptPrefixBytes"/>), invalid bytes as U+FFFD.</summary>
    private static string Utf8Prefix(ReadOnlySpan<byte> bytes) =>
        Encoding.UTF8.GetString(bytes[..Math.Min(bytes.Length, KeptPrefixBytes)]).TrimEnd('\uFFFD');

    internal static string Sha256Hex(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));

    private static ManifestExample? ParseLine(
        string raw, int lineNo, string dir, ImageRoots roots, Dictionary<string, int> firstLineOfId, List<string> problems, out bool jsonObject)
    {
        jsonObject = false;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(raw, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            problems.Add("invalid JSON: " + TrimJsonMessage(e));
            return null;
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                problems.Add($"not a JSON object (found {Describe(root.ValueKind)})");
                return null;
            }
            jsonObject = true;

            var fields = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            var metadata = new List<JsonProperty>();
            foreach (var prop in root.EnumerateObject())
            {
                if (!fields.TryAdd(prop.Name, prop.Value))
                    problems.Add($"duplicate field '{prop.Name}'");
                else if (!ManifestFields.Known.Contains(prop.Name))
                    metadata.Add(prop);
            }

            string? id = ReadId(fields, lineNo, firstLineOfId, problems);
            string? task = ReadTask(fields, problems);
            var (imagePath, imageRelative, imageSize) = ReadImage(fields, task, dir, roots, problems);
            string? prompt = ReadPrompt(fields, task, problems);
            string? expected = ReadExpected(fields, problems);
            double[]? box = ReadBox(fields, task, imageSize, problems);

            if (problems.Count > 0 || id == null || task == null || prompt == null)
                return null;
            return new ManifestExample(id, task, imagePath, imageRelative, prompt, expected, box,
                MetadataToJson(metadata), lineNo);
        }
    }

    private static string? ReadId(
        Dictionary<string, JsonElement> fields, int lineNo, Dictionary<string, int> firstLineOfId, List<string> problems)
    {
        if (!fields.TryGetValue(ManifestFields.Id, out var el) || el.ValueKind == JsonValueKind.Null)
        {
            problems.Add("missing id");
            return null;
        }
        if (el.ValueKind != JsonValueKind.String)
        {
            problems.Add($"id must be a string (found {Describe(el.ValueKind)})");
            return null;
        }
        string id = el.GetString()!;
        if (string.IsNullOrWhiteSpace(id))
        {
            problems.Add("empty id");
            return null;
        }
        // Ids are registered on first sight even if that line is rejected for something else,
        // so one validation run reports every clash at once.
        if (firstLineOfId.TryGetValue(id, out int first))
        {
            problems.Add($"duplicate id '{id}' (first used on line {first})");
            return null;
        }
        firstLineOfId[id] = lineNo;
        return id;
    }

    private static string? ReadTask(Dictionary<string, JsonElement> fields, List<string> problems)
    {
        if (!fields.TryGetValue(ManifestFields.Task, out var el) || el.ValueKind == JsonValueKind.Null)
        {
            problems.Add("missing task (expected vqa or tqa)");
            return null;
        }
        string? task = el.ValueKind == JsonValueKind.String ? el.GetString() : el.GetRawText();
        if (task != ManifestTasks.Vqa && task != ManifestTasks.Tqa)
        {
            problems.Add($"unknown task '{task}' (expected vqa or tqa)");
            return null;
        }
        return task;
    }

    private static (string? Abs, string? Rel, (int W, int H)? Size) ReadImage(
        Dictionary<string, JsonElement> fields, string? task, string dir, ImageRoots roots, List<string> problems)
    {
        bool present = fields.TryGetValue(ManifestFields.Image, out var el) && el.ValueKind != JsonValueKind.Null;
        if (present && el.ValueKind != JsonValueKind.String)
        {
            problems.Add($"image must be a string path (found {Describe(el.ValueKind)})");
            return (null, null, null);
        }
        string? rel = present ? el.GetString() : null;
        if (string.IsNullOrWhiteSpace(rel))
            rel = null;

        if (task == ManifestTasks.Tqa)
        {
            if (rel != null)
                problems.Add("tqa example with image (tqa has no image; use task vqa)");
            return (null, null, null);
        }
        if (rel == null)
        {
            if (task == ManifestTasks.Vqa)
                problems.Add("vqa example without image");
            return (null, null, null);
        }

        string? abs;
        if (IsAbsolute(rel))
        {
            abs = Path.GetFullPath(rel);
            if (!roots.ContainsLexically(abs))
            {
                problems.Add(roots.Roots.Count == 0
                    ? $"image path '{rel}' is absolute (must be relative to the manifest's folder, or lie under a folder named with --image-root)"
                    : $"image path '{rel}' is absolute and not under any --image-root ({string.Join(", ", roots.Roots.Select(r => r.Full))})");
                return (null, null, null);
            }
        }
        else
        {
            abs = ResolveInside(dir, rel);
            if (abs == null)
            {
                problems.Add($"image path '{rel}' escapes the dataset folder ('..')");
                return (null, null, null);
            }
        }
        if (!File.Exists(abs))
        {
            problems.Add(Directory.Exists(abs) ? $"image path '{rel}' is a folder" : $"image file not found: '{rel}'");
            return (null, null, null);
        }
        string real;
        try
        {
            real = RealPath(abs);
        }
        catch (IOException e)
        {
            problems.Add($"image path '{rel}': {e.Message}");
            return (null, null, null);
        }
        if (!roots.ContainsReal(real))
        {
            problems.Add($"image path '{rel}' leads through a symbolic link to '{real}', outside the dataset folder" +
                         (roots.Roots.Count == 0 ? " (name its folder with --image-root to allow it)" : " and every --image-root"));
            return (null, null, null);
        }
        var size = ReadImageSize(abs);
        if (size == null)
        {
            problems.Add($"image file '{rel}' is not a readable image");
            return (null, null, null);
        }
        return (abs, rel, size);
    }

    /// <summary>Width and height from the image header only (no pixel decode).</summary>
    internal static (int W, int H)? ReadImageSize(string path)
    {
        try
        {
            using var codec = SKCodec.Create(path);
            if (codec == null)
                return null;
            return (codec.Info.Width, codec.Info.Height);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    internal static bool IsAbsolute(string rel) =>
        Path.IsPathRooted(rel) || rel.StartsWith('/') || rel.StartsWith('\\')
        || (rel.Length >= 2 && rel[1] == ':' && char.IsAsciiLetter(rel[0]));

    /// <summary>Absolute path of <paramref name="rel"/> under <paramref name="dir"/>, or null when it leaves it.</summary>
    internal static string? ResolveInside(string dir, string rel)
    {
        // Walk the segments so "a/../../x" is caught even where the OS would normalise it away.
        int depth = 0;
        foreach (var seg in rel.Split('/', '\\'))
        {
            if (seg == "..")
            {
                if (--depth < 0)
                    return null;
            }
            else if (seg.Length > 0 && seg != ".")
                depth++;
        }
        string root = Path.GetFullPath(dir);
        string abs = Path.GetFullPath(Path.Combine(root, rel.Replace('\\', '/')));
        return IsUnder(abs, root) ? abs : null;
    }

    /// <summary>Whether <paramref name="path"/> is <paramref name="root"/> or lies below it (both full paths).</summary>
    public static bool IsUnder(string path, string root)
    {
        string prefix = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        return path == root || path.StartsWith(prefix, StringComparison.Ordinal);
    }

    /// <summary>
    /// The path with every symbolic link along it resolved (like realpath(3)); parts that do not exist are kept as
    /// written. Throws <see cref="IOException"/> on a link cycle.
    /// </summary>
    public static string RealPath(string path)
    {
        string pending = Path.GetFullPath(path);
        for (int hops = 0; hops <= 40; hops++)
        {
            string root = Path.GetPathRoot(pending)!;
            var parts = pending[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
            string current = root;
            bool relinked = false;
            for (int i = 0; i < parts.Length && !relinked; i++)
            {
                string next = Path.Combine(current, parts[i]);
                string? target = new FileInfo(next).LinkTarget;
                if (target is null)
                {
                    current = next;
                    continue;
                }
                pending = Path.GetFullPath(Path.Combine([Path.GetFullPath(target, current), .. parts[(i + 1)..]]));
                relinked = true;
            }
            if (!relinked)
                return current;
        }
        throw new IOException($"too many levels of symbolic links in '{path}'");
    }

    private static string? ReadPrompt(Dictionary<string, JsonElement> fields, string? task, List<string> problems)
    {
        if (!fields.TryGetValue(ManifestFields.Prompt, out var el) || el.ValueKind == JsonValueKind.Null)
        {
            problems.Add("missing prompt");
            return null;
        }
        if (el.ValueKind != JsonValueKind.String)
        {
            problems.Add($"prompt must be a string (found {Describe(el.ValueKind)})");
            return null;
        }
        string prompt = el.GetString()!;
        if (string.IsNullOrWhiteSpace(prompt))
        {
            problems.Add("empty prompt");
            return null;
        }
        int n = CountImageTokens(prompt);
        if (task == ManifestTasks.Vqa && n == 0)
            problems.Add("vqa prompt has no <image> token (needs exactly one)");
        else if (task == ManifestTasks.Vqa && n > 1)
            problems.Add($"vqa prompt has {n} <image> tokens (needs exactly one)");
        else if (task == ManifestTasks.Tqa && n > 0)
            problems.Add("tqa prompt contains <image> (tqa has no image)");
        return prompt;
    }

    internal static int CountImageTokens(string prompt)
    {
        int n = 0;
        for (int at = prompt.IndexOf(ManifestTasks.ImageToken, StringComparison.Ordinal); at >= 0;
             at = prompt.IndexOf(ManifestTasks.ImageToken, at + ManifestTasks.ImageToken.Length, StringComparison.Ordinal))
            n++;
        return n;
    }

    private static string? ReadExpected(Dictionary<string, JsonElement> fields, List<string> problems)
    {
        if (!fields.TryGetValue(ManifestFields.Expected, out var el) || el.ValueKind == JsonValueKind.Null)
            return null;
        if (el.ValueKind != JsonValueKind.String)
        {
            problems.Add($"expected must be a string (found {Describe(el.ValueKind)})");
            return null;
        }
        string s = el.GetString()!;
        if (string.IsNullOrWhiteSpace(s))
        {
            problems.Add("empty expected (omit the field when there is no answer)");
            return null;
        }
        return s;
    }

    private static double[]? ReadBox(
        Dictionary<string, JsonElement> fields, string? task, (int W, int H)? imageSize, List<string> problems)
    {
        if (!fields.TryGetValue(ManifestFields.ObjectBox, out var el) || el.ValueKind == JsonValueKind.Null)
            return null;
        if (el.ValueKind != JsonValueKind.Array || el.GetArrayLength() != 4
            || el.EnumerateArray().Any(v => v.ValueKind != JsonValueKind.Number))
        {
            problems.Add($"object_box must be 4 numbers [x0, y0, x1, y1], got {Shorten(el.GetRawText())}");
            return null;
        }
        var box = el.EnumerateArray().Select(v => v.GetDouble()).ToArray();
        string shown = FormatBox(box);
        if (box.Any(v => !double.IsFinite(v)))
        {
            problems.Add($"object_box must be finite numbers, got {shown}");
            return null;
        }
        if (!(box[0] < box[2] && box[1] < box[3]))
        {
            problems.Add($"object_box {shown} is not ordered (needs x0 < x1 and y0 < y1)");
            return null;
        }
        if (box[0] < 0 || box[1] < 0)
        {
            problems.Add($"object_box {shown} has negative coordinates");
            return null;
        }
        if (task == ManifestTasks.Tqa)
        {
            problems.Add("tqa example with object_box (tqa has no image)");
            return null;
        }
        if (imageSize is { } s && (box[2] > s.W + BoxTolerancePx || box[3] > s.H + BoxTolerancePx))
        {
            problems.Add($"object_box {shown} lies outside the {s.W}x{s.H} image");
            return null;
        }
        return box;
    }

    internal static string FormatBox(double[] box) =>
        "[" + string.Join(", ", box.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + "]";

    private static string MetadataToJson(List<JsonProperty> metadata)
    {
        if (metadata.Count == 0)
            return "{}";
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = ManifestWriter.Encoder }))
        {
            w.WriteStartObject();
            foreach (var p in metadata)
                p.WriteTo(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static string TrimJsonMessage(JsonException e)
    {
        // System.Text.Json appends " LineNumber: 0 | BytePositionInLine: n."; say column instead.
        string msg = e.Message;
        int cut = msg.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut >= 0)
            msg = msg[..cut];
        return e.BytePositionInLine is long col ? $"{msg} (at column {col + 1})" : msg;
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..57] + "...";
}
