namespace LlavaMech.Processing;

/// <summary>
/// A text tokenizer with Hugging Face semantics. Ids are those the Hugging Face tokenizer of the model
/// gives for the same text with <c>add_special_tokens=False</c>.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>
    /// Ids of <paramref name="text"/> as the start of a sequence, without BOS (or any other template token).
    /// Special tokens written in the text (e.g. <c>&lt;/s&gt;</c>) become their ids, as in Hugging Face.
    /// </summary>
    int[] Encode(string text);

    /// <summary>The raw vocabulary piece, e.g. <c>"▁red"</c> or <c>"&lt;0x0A&gt;"</c>; a placeholder <c>"&lt;id:N&gt;"</c> for an id the tokenizer does not know.</summary>
    string IdToToken(int id);

    /// <summary>Readable text; special tokens and ids the tokenizer does not know are skipped.</summary>
    string Decode(IReadOnlyList<int> ids);

    /// <summary>The id of a vocabulary piece or added token given verbatim, or null.</summary>
    int? TokenToId(string token);

    /// <summary>One more than the largest id the tokenizer knows (vocabulary plus added tokens).</summary>
    int VocabSize { get; }

    /// <summary>Id of the beginning-of-sequence token, when the tokenizer has one.</summary>
    int? BosId { get; }

    /// <summary>
    /// Ids of <paramref name="text"/> where it directly follows a special token inside a prompt
    /// (in LLaVA: the text after <c>&lt;image&gt;</c>). Hugging Face's Llama tokenizers (Metaspace with
    /// <c>prepend_scheme="first"</c>) put no <c>"▁"</c> in front of such a piece, unlike <see cref="Encode"/>.
    /// The default is <see cref="Encode"/>, right for tokenizers without a prefix space.
    /// </summary>
    int[] EncodeAfterSpecialToken(string text) => Encode(text);
}
