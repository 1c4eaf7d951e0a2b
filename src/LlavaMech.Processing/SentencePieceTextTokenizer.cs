using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace LlavaMech.Processing;

/// <summary>
/// The fallback for model folders without <c>tokenizer.json</c>: a SentencePiece <c>tokenizer.model</c>
/// (Microsoft.ML.Tokenizers), driven so that its ids equal those of the Hugging Face fast Llama tokenizer
/// converted from the same model: text is split at special tokens; in each piece spaces become <c>"▁"</c>;
/// one <c>"▁"</c> is put in front of the first piece of the text unless it starts with a space
/// (Metaspace, <c>prepend_scheme="first"</c>), or in front of every piece when tokenizer_config.json says
/// <c>"legacy": true</c>. Added tokens listed in tokenizer_config.json (<c>added_tokens_decoder</c>) are known too.
/// </summary>
public sealed class SentencePieceTextTokenizer : ITextTokenizer
{
    private const char Space = '\u2581';
    private readonly SentencePieceTokenizer _sp;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly Dictionary<int, string> _idToToken;
    private readonly HashSet<int> _special;               // skipped by Decode
    private readonly (string Text, int Id)[] _splitTokens; // split off verbatim when encoding, longest first
    private readonly bool _legacy;
    private readonly int _spVocab;

    /// <summary>The tokenizer.model this was loaded from.</summary>
    public string SourceFile { get; }

    public int VocabSize { get; }

    public int? BosId { get; }

    private SentencePieceTextTokenizer(string path, SentencePieceTokenizer sp, Dictionary<string, int> tokenToId,
        Dictionary<int, string> idToToken, HashSet<int> special, (string, int)[] splitTokens, bool legacy, int? bosId)
    {
        SourceFile = path;
        _sp = sp;
        _tokenToId = tokenToId;
        _idToToken = idToToken;
        _special = special;
        _splitTokens = splitTokens;
        _legacy = legacy;
        _spVocab = sp.Vocabulary.Count == 0 ? 0 : sp.Vocabulary.Values.Max() + 1;
        BosId = bosId;
        VocabSize = idToToken.Count == 0 ? 0 : idToToken.Keys.Max() + 1;
    }

    /// <summary>Loads <paramref name="modelPath"/>; <c>tokenizer_config.json</c> beside it, when present, adds tokens and the legacy flag.</summary>
    public static SentencePieceTextTokenizer Load(string modelPath)
    {
        if (!File.Exists(modelPath))
            throw new ProcessingException($"{modelPath}: file not found");
        SentencePieceTokenizer sp;
        try
        {
            using var stream = File.OpenRead(modelPath);
            sp = SentencePieceTokenizer.Create(stream, false, false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new ProcessingException($"{modelPath}: not a readable SentencePiece model: {e.Message}", e);
        }

        var tokenToId = new Dictionary<string, int>(StringComparer.Ordinal);
        var idToToken = new Dictionary<int, string>();
        foreach (var (piece, id) in sp.Vocabulary)
        {
            tokenToId[piece] = id;
            idToToken[id] = piece;
        }

        var special = new HashSet<int>();
        var split = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (tok, id) in new[] { (sp.UnknownToken, sp.UnknownId), (sp.BeginningOfSentenceToken, sp.BeginningOfSentenceId), (sp.EndOfSentenceToken, sp.EndOfSentenceId) })
        {
            if (id < 0 || string.IsNullOrEmpty(tok)) continue;
            special.Add(id);
            split[tok] = id;
        }

        var configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, "tokenizer_config.json");
        bool legacy = false;
        if (File.Exists(configPath))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(configPath));
                var root = doc.RootElement;
                if (root.TryGetProperty("legacy", out var l) && l.ValueKind == JsonValueKind.True) legacy = true;
                if (root.TryGetProperty("added_tokens_decoder", out var atd) && atd.ValueKind == JsonValueKind.Object)
                {
                    foreach (var p in atd.EnumerateObject())
                    {
                        if (!int.TryParse(p.Name, out var id) || !p.Value.TryGetProperty("content", out var c)) continue;
                        var content = c.GetString();
                        if (string.IsNullOrEmpty(content)) continue;
                        tokenToId[content] = id;
                        idToToken[id] = content;
                        split[content] = id;
                        if (p.Value.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True) special.Add(id);
                    }
                }
            }
            catch (JsonException e)
            {
                throw new ProcessingException($"{configPath}: invalid JSON: {e.Message}", e);
            }
        }

        int? bosId = sp.BeginningOfSentenceId >= 0 ? sp.BeginningOfSentenceId : null;
        var bosName = HuggingFaceTokenizer.ReadBosToken(configPath);
        if (bosName != null && tokenToId.TryGetValue(bosName, out var b)) bosId = b;

        var splitTokens = split.Select(kv => (kv.Key, kv.Value)).OrderByDescending(t => t.Key.Length).ToArray();
        return new SentencePieceTextTokenizer(modelPath, sp, tokenToId, idToToken, special, splitTokens, legacy, bosId);
    }

    public int[] Encode(string text) => EncodeCore(text, atStart: true);

    public int[] EncodeAfterSpecialToken(string text) => EncodeCore(text, atStart: false);

    public string IdToToken(int id) => _idToToken.TryGetValue(id, out var t) ? t : $"<id:{id}>";

    public int? TokenToId(string token) => token != null && _tokenToId.TryGetValue(token, out var id) ? id : null;

    public string Decode(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        // Special and added tokens are skipped (Hugging Face skip_special_tokens); non-special added tokens are kept verbatim.
        var sb = new System.Text.StringBuilder();
        var run = new List<int>();
        bool first = true;
        void Flush()
        {
            if (run.Count == 0) return;
            var s = _sp.Decode(run, considerSpecialTokens: false);
            // ML.Tokenizers drops the leading space of every call; Hugging Face's Strip decoder only that of the whole text.
            if (!first && run.Count > 0 && IdToToken(run[0]).StartsWith(Space)) s = " " + s;
            sb.Append(s);
            run.Clear();
            first = false;
        }
        foreach (var id in ids)
        {
            if (_special.Contains(id) || !_idToToken.ContainsKey(id)) continue;
            if (id < _spVocab) { run.Add(id); continue; }
            Flush();
            sb.Append(_idToToken[id]);
            first = false;
        }
        Flush();
        return sb.ToString();
    }

    private int[] EncodeCore(string text, bool atStart)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        int pos = 0, segStart = 0;
        while (pos <= text.Length)
        {
            (string Text, int Id)? hit = null;
            if (pos < text.Length)
                foreach (var st in _splitTokens)
                    if (string.CompareOrdinal(text, pos, st.Text, 0, st.Text.Length) == 0) { hit = st; break; }
            if (hit == null && pos < text.Length) { pos++; continue; }
            if (pos > segStart) EncodePiece(text.Substring(segStart, pos - segStart), atStart && segStart == 0, ids);
            if (hit == null) break;
            ids.Add(hit.Value.Id);
            pos += hit.Value.Text.Length;
            segStart = pos;
        }
        return ids.ToArray();
    }

    private void EncodePiece(string piece, bool first, List<int> ids)
    {
        var s = piece.Replace(' ', Space);
        if (_legacy || (first && s[0] != Space)) s = Space + s;
        ids.AddRange(_sp.EncodeToIds(s, addBeginningOfSentence: false, addEndOfSentence: false,
            considerPreTokenization: false, considerNormalization: false));
    }
}
