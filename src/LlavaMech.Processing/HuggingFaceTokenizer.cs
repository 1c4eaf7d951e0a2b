using System.Text.Json;
using NativeTokenizer = Tokenizers.DotNet.Tokenizer;

namespace LlavaMech.Processing;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c>, run by the tokenizers library itself (Rust, through Tokenizers.DotNet),
/// so ids are exactly those of the fast tokenizer. The vocabulary (for <see cref="IdToToken"/>, <see cref="TokenToId"/>)
/// and the post-processor template (whose BOS this class strips again) are read from the same JSON.
/// </summary>
public sealed class HuggingFaceTokenizer : ITextTokenizer, IDisposable
{
    private readonly NativeTokenizer _native;
    private readonly object _lock = new();
    private readonly Dictionary<string, int> _tokenToId;
    private readonly Dictionary<int, string> _idToToken;
    private readonly int _templatePrefix;   // ids the post-processor puts before the text (e.g. BOS)
    private readonly int _templateSuffix;   // ids it puts after the text
    private readonly string? _separator;    // an added special token used to encode text as if it followed one
    private readonly int _separatorId;

    /// <summary>The tokenizer.json this was loaded from.</summary>
    public string SourceFile { get; }

    public int VocabSize { get; }

    public int? BosId { get; }

    private HuggingFaceTokenizer(string path, NativeTokenizer native, Dictionary<string, int> tokenToId,
        Dictionary<int, string> idToToken, int prefix, int suffix, string? separator, int separatorId, int? bosId)
    {
        SourceFile = path;
        _native = native;
        _tokenToId = tokenToId;
        _idToToken = idToToken;
        _templatePrefix = prefix;
        _templateSuffix = suffix;
        _separator = separator;
        _separatorId = separatorId;
        BosId = bosId;
        VocabSize = idToToken.Count == 0 ? 0 : idToToken.Keys.Max() + 1;
    }

    /// <summary>Loads <paramref name="tokenizerJsonPath"/>; <c>tokenizer_config.json</c> beside it, when present, names the BOS token.</summary>
    public static HuggingFaceTokenizer Load(string tokenizerJsonPath)
    {
        if (!File.Exists(tokenizerJsonPath))
            throw new ProcessingException($"{tokenizerJsonPath}: file not found");

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(tokenizerJsonPath));
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            throw new ProcessingException($"{tokenizerJsonPath}: cannot read tokenizer: {e.Message}", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new ProcessingException($"{tokenizerJsonPath}: not a Hugging Face tokenizer.json (no \"model\" object)");

            var tokenToId = new Dictionary<string, int>(StringComparer.Ordinal);
            var idToToken = new Dictionary<int, string>();
            ReadVocab(tokenizerJsonPath, model, tokenToId, idToToken);

            // Added tokens override the model vocabulary (same as the tokenizers library).
            var specials = new List<AddedToken>();
            if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            {
                foreach (var t in added.EnumerateArray())
                {
                    var at = new AddedToken(
                        t.GetProperty("id").GetInt32(),
                        t.GetProperty("content").GetString() ?? "",
                        Bool(t, "special"), Bool(t, "lstrip"), Bool(t, "rstrip"), Bool(t, "single_word"), Bool(t, "normalized"));
                    tokenToId[at.Content] = at.Id;
                    idToToken[at.Id] = at.Content;
                    specials.Add(at);
                }
            }

            var (prefix, suffix, templateFirst) = root.TryGetProperty("post_processor", out var pp)
                ? TemplateCounts(tokenizerJsonPath, pp)
                : (0, 0, null);

            NativeTokenizer native;
            try
            {
                native = new NativeTokenizer(tokenizerJsonPath);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new ProcessingException($"{tokenizerJsonPath}: the tokenizers library cannot load it: {e.Message}", e);
            }

            int? bosId = null;
            var bosToken = ReadBosToken(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonPath))!, "tokenizer_config.json"))
                           ?? templateFirst;
            if (bosToken != null && tokenToId.TryGetValue(bosToken, out var b)) bosId = b;

            // A special token that is split off verbatim and strips nothing around it: prefixing a text with it
            // makes the tokenizers library encode the text as a piece that follows a special token.
            var sep = specials
                .Where(s => s.Special && !s.Lstrip && !s.Rstrip && !s.SingleWord && !s.Normalized && s.Content.Length > 0)
                .OrderBy(s => s.Id == bosId ? 0 : 1).ThenBy(s => s.Id)
                .FirstOrDefault();

            var tok = new HuggingFaceTokenizer(tokenizerJsonPath, native, tokenToId, idToToken, prefix, suffix, sep?.Content, sep?.Id ?? -1, bosId);

            // The template must be what the library adds to an empty text, or stripping it would cut real ids.
            var empty = tok.Native("");
            if (empty.Length != prefix + suffix)
            {
                tok.Dispose();
                throw new ProcessingException(
                    $"{tokenizerJsonPath}: unsupported post_processor: it adds {empty.Length} ids to an empty text, expected {prefix + suffix}");
            }
            return tok;
        }
    }

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = Native(text);
        return Strip(ids, 0);
    }

    public int[] EncodeAfterSpecialToken(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (_separator == null) return Encode(text);
        var ids = Native(_separator + text);
        if (ids.Length < _templatePrefix + 1 + _templateSuffix || ids[_templatePrefix] != _separatorId)
            throw new ProcessingException($"{SourceFile}: special token {_separator} was not kept whole when encoding");
        return Strip(ids, 1);
    }

    public string IdToToken(int id) => _idToToken.TryGetValue(id, out var t) ? t : $"<id:{id}>";

    public int? TokenToId(string token) => token != null && _tokenToId.TryGetValue(token, out var id) ? id : null;

    public string Decode(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var known = new List<uint>(ids.Count);
        foreach (var id in ids)
            if (id >= 0 && _idToToken.ContainsKey(id)) known.Add((uint)id);
        if (known.Count == 0) return "";
        lock (_lock)
            return _native.Decode(known.ToArray());
    }

    public void Dispose()
    {
        lock (_lock) _native.Dispose();
    }

    private int[] Native(string text)
    {
        uint[] ids;
        lock (_lock)
        {
            try
            {
                ids = _native.Encode(text);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new ProcessingException($"{SourceFile}: encoding failed: {e.Message}", e);
            }
        }
        var r = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++) r[i] = checked((int)ids[i]);
        return r;
    }

    private int[] Strip(int[] ids, int extraPrefix)
    {
        int start = _templatePrefix + extraPrefix, len = ids.Length - start - _templateSuffix;
        if (len < 0)
            throw new ProcessingException($"{SourceFile}: encoding returned fewer ids than the post_processor template adds");
        return ids.AsSpan(start, len).ToArray();
    }

    private static bool Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

    private static void ReadVocab(string path, JsonElement model, Dictionary<string, int> tokenToId, Dictionary<int, string> idToToken)
    {
        if (!model.TryGetProperty("vocab", out var vocab))
            throw new ProcessingException($"{path}: model has no \"vocab\"");
        if (vocab.ValueKind == JsonValueKind.Object)
        {
            // BPE, WordPiece, WordLevel: {"piece": id}
            foreach (var p in vocab.EnumerateObject())
            {
                var id = p.Value.GetInt32();
                tokenToId[p.Name] = id;
                idToToken[id] = p.Name;
            }
        }
        else if (vocab.ValueKind == JsonValueKind.Array)
        {
            // Unigram: [["piece", score], ...], the id is the index
            int id = 0;
            foreach (var p in vocab.EnumerateArray())
            {
                var piece = p.ValueKind == JsonValueKind.Array ? p[0].GetString() : p.GetString();
                if (piece != null)
                {
                    tokenToId[piece] = id;
                    idToToken[id] = piece;
                }
                id++;
            }
        }
        else
        {
            throw new ProcessingException($"{path}: model \"vocab\" is neither an object nor an array");
        }
    }

    /// <summary>How many ids the post-processor adds before and after a single sequence, and the first special token it adds.</summary>
    private static (int Prefix, int Suffix, string? First) TemplateCounts(string path, JsonElement pp)
    {
        if (pp.ValueKind == JsonValueKind.Null) return (0, 0, null);
        var type = pp.TryGetProperty("type", out var t) ? t.GetString() : null;
        switch (type)
        {
            case "TemplateProcessing":
            {
                int prefix = 0, suffix = 0;
                bool seenSequence = false;
                string? first = null;
                foreach (var item in pp.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    if (!item.TryGetProperty("SpecialToken", out var st)) continue;
                    var name = st.GetProperty("id").GetString() ?? "";
                    int n = 1;
                    if (pp.TryGetProperty("special_tokens", out var specials) && specials.TryGetProperty(name, out var spec)
                        && spec.TryGetProperty("ids", out var ids))
                        n = ids.GetArrayLength();
                    if (seenSequence) suffix += n;
                    else { prefix += n; first ??= name; }
                }
                return (prefix, suffix, first);
            }
            case "Sequence":
            {
                int prefix = 0, suffix = 0;
                string? first = null;
                foreach (var p in pp.GetProperty("processors").EnumerateArray())
                {
                    var (a, b, f) = TemplateCounts(path, p);
                    prefix += a;
                    suffix += b;
                    first ??= f;
                }
                return (prefix, suffix, first);
            }
            case "BertProcessing":
            case "RobertaProcessing":
                return (1, 1, null);
            case "ByteLevel":
                return (0, 0, null);
            default:
                throw new ProcessingException($"{path}: unsupported post_processor type \"{type}\"");
        }
    }

    /// <summary>The bos_token of a tokenizer_config.json (a string or {"content": ...}), or null.</summary>
    internal static string? ReadBosToken(string configPath) => ReadTokenField(configPath, "bos_token");

    internal static string? ReadTokenField(string configPath, string field)
    {
        if (!File.Exists(configPath)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(configPath));
            if (!doc.RootElement.TryGetProperty(field, out var v)) return null;
            return v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
                _ => null,
            };
        }
        catch (JsonException e)
        {
            throw new ProcessingException($"{configPath}: invalid JSON: {e.Message}", e);
        }
    }

    private sealed record AddedToken(int Id, string Content, bool Special, bool Lstrip, bool Rstrip, bool SingleWord, bool Normalized);
}
