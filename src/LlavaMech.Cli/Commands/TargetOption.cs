using LlavaMech.Processing;

namespace LlavaMech.Cli.Commands;

/// <summary>--target TOKEN: a token id, a vocabulary piece, or a word that is one token (with or without its leading space).</summary>
public static class TargetOption
{
    public static int? Resolve(string? spec, ITextTokenizer tokenizer, int vocab)
    {
        if (spec is null) return null;
        if (int.TryParse(spec, out var id))
            return id >= 0 && id < vocab ? id : throw new UsageException($"--target {spec} is outside the vocabulary of {vocab}");
        if (Runtime.TargetResolver.SingleToken(spec, tokenizer, vocab) is { } t) return t;
        var ids = tokenizer.Encode(" " + spec.Trim());
        throw new UsageException($"--target '{spec}' is not a single token (it tokenizes to {ids.Length}: {string.Join(" ", ids.Select(tokenizer.IdToToken))}); give one of those pieces or an id");
    }
}
