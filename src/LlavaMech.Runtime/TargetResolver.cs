using LlavaMech.Model;
using LlavaMech.Processing;

namespace LlavaMech.Runtime;

/// <summary>
/// Maps a manifest answer ("red", "dark blue") to vocabulary tokens, as the CLI's <c>--target expected</c> does.
/// The answer follows the prompt as a word ("... is red"), so its word-start form comes first: the piece with
/// SentencePiece's word marker ("▁red"), then the text " answer" when it encodes to exactly one token (byte-level
/// BPE's "Ġred"), and only then the answer as a bare piece ("red", or a piece given verbatim such as "▁red"). A
/// vocabulary with both "red" (a word-internal piece, as in "shred") and "▁red" must give "▁red": the model
/// answers with that one. Unlike <c>--target</c>, a numeric answer ("3") is a word here, never a token id.
/// </summary>
public static class TargetResolver
{
    /// <summary>
    /// <c>--target TOKEN</c>: a token id, a vocabulary piece, or a word that is one token (with or without its leading
    /// space); null when <paramref name="spec"/> is null. A number is a token id here.
    /// </summary>
    /// <exception cref="InvalidOptionException">an id outside the vocabulary, or a word that is not one token.</exception>
    public static int? Resolve(string? spec, ITextTokenizer tokenizer, int vocab)
    {
        if (spec is null) return null;
        if (int.TryParse(spec, out var id))
            return id >= 0 && id < vocab ? id : throw new InvalidOptionException($"--target {spec} is outside the vocabulary of {vocab}");
        if (SingleToken(spec, tokenizer, vocab) is { } t) return t;
        var ids = tokenizer.Encode(" " + spec.Trim());
        throw new InvalidOptionException($"--target '{spec}' is not a single token (it tokenizes to {ids.Length}: {string.Join(" ", ids.Select(tokenizer.IdToToken))}); give one of those pieces or an id");
    }

    /// <summary>The answer's single token, or null when it is not one token.</summary>
    public static int? SingleToken(string answer, ITextTokenizer tokenizer, int vocab)
    {
        if (string.IsNullOrWhiteSpace(answer)) return null;
        int? Piece(string piece) => tokenizer.TokenToId(piece) is { } t && t >= 0 && t < vocab ? t : null;
        if (Piece("\u2581" + answer.Trim().Replace(' ', '\u2581')) is { } wordStart) return wordStart;
        var ids = tokenizer.Encode(" " + answer.Trim());
        if (ids.Length == 1 && ids[0] >= 0 && ids[0] < vocab) return ids[0];
        return Piece(answer) ?? Piece(answer.Replace(' ', '\u2581'));
    }

    /// <summary>
    /// The token an answer starts with, for accuracy: its single token when it has one, else the first token of
    /// " answer" that is more than a bare word marker. Null for an empty answer.
    /// </summary>
    public static int? FirstToken(string answer, ITextTokenizer tokenizer, int vocab)
    {
        if (SingleToken(answer, tokenizer, vocab) is { } single) return single;
        if (string.IsNullOrWhiteSpace(answer)) return null;
        foreach (var id in tokenizer.Encode(" " + answer.Trim()))
        {
            var piece = tokenizer.IdToToken(id);
            if (!string.IsNullOrWhiteSpace(piece.Replace('\u2581', ' '))) return id;
        }
        return null;
    }

    /// <summary>Why <see cref="SingleToken"/> found nothing, for the rejects table.</summary>
    public static string NotOneTokenReason(string answer, ITextTokenizer tokenizer)
    {
        var ids = tokenizer.Encode(" " + answer.Trim());
        return $"expected answer '{answer}' is not a single token (it tokenizes to {ids.Length}: {string.Join(" ", ids.Select(tokenizer.IdToToken))}); " +
               "use --target argmax, or give one-token answers";
    }
}
