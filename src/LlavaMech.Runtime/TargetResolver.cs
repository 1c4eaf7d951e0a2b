using LlavaMech.Processing;

namespace LlavaMech.Runtime;

/// <summary>
/// Maps a manifest answer ("red", "dark blue") to vocabulary tokens, as the CLI's <c>--target expected</c> does:
/// the answer as a piece, with SentencePiece's word marker, or a word that encodes to exactly one token (with its
/// leading space). Unlike <c>--target</c>, a numeric answer ("3") is a word here, never a token id.
/// </summary>
public static class TargetResolver
{
    /// <summary>The answer's single token, or null when it is not one token.</summary>
    public static int? SingleToken(string answer, ITextTokenizer tokenizer, int vocab)
    {
        if (string.IsNullOrWhiteSpace(answer)) return null;
        foreach (var piece in new[] { answer, "\u2581" + answer.TrimStart(), answer.Replace(' ', '\u2581') })
            if (tokenizer.TokenToId(piece) is { } t && t >= 0 && t < vocab) return t;
        var ids = tokenizer.Encode(" " + answer.Trim());
        return ids.Length == 1 && ids[0] >= 0 && ids[0] < vocab ? ids[0] : null;
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
