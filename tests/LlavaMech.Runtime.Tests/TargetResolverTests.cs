using LlavaMech.Processing;
using LlavaMech.Testing;

namespace LlavaMech.Runtime.Tests;

/// <summary>
/// Answer words against the real tokenizer of tests/fixtures/tiny-llava-mha (a 600-piece BPE with SentencePiece word
/// markers; ids below are those of its tokenizer.json). The colour words are covered in the CLI's tests.
/// </summary>
public class TargetResolverTests
{
    private const int Vocab = 602;
    private static readonly ITextTokenizer Tok = TokenizerLoader.Load(Fixtures.Model("tiny-llava-mha"));

    [Theory]
    [InlineData("circle", 331)]
    [InlineData("banana", 315)]
    [InlineData("sky", 326)]
    [InlineData("  sky ", 326)]
    [InlineData("the", 261)]
    [InlineData("of", 269)]      // "▁of", not the word-internal "of" (525)
    [InlineData("is", 264)]      // "▁is", not "is" (393)
    public void A_word_resolves_to_its_word_start_piece(string answer, int id)
    {
        Assert.Equal("\u2581" + answer.Trim(), Tok.IdToToken(id));
        Assert.Equal(id, TargetResolver.SingleToken(answer, Tok, Vocab));
        Assert.Equal(id, TargetResolver.FirstToken(answer, Tok, Vocab));
    }

    [Fact]
    public void A_piece_given_verbatim_resolves_to_itself()
    {
        Assert.Equal(331, TargetResolver.SingleToken("\u2581circle", Tok, Vocab));
        Assert.Equal(258, TargetResolver.SingleToken("<0xFF>", Tok, Vocab));
    }

    [Fact]
    public void A_numeric_answer_is_a_word_never_a_token_id()
    {
        var id = TargetResolver.FirstToken("3", Tok, Vocab);
        Assert.NotNull(id);
        Assert.NotEqual(3, id);
        Assert.Contains("3", Tok.IdToToken(id!.Value));
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void An_empty_answer_has_no_token(string answer)
    {
        Assert.Null(TargetResolver.SingleToken(answer, Tok, Vocab));
        Assert.Null(TargetResolver.FirstToken(answer, Tok, Vocab));
    }

    [Fact]
    public void A_two_word_answer_is_not_one_token_but_starts_with_its_first_word()
    {
        Assert.Null(TargetResolver.SingleToken("sky banana", Tok, Vocab));
        Assert.Equal(326, TargetResolver.FirstToken("sky banana", Tok, Vocab));
        var reason = TargetResolver.NotOneTokenReason("sky banana", Tok);
        Assert.Contains("expected answer 'sky banana' is not a single token (it tokenizes to 2: \u2581sky \u2581banana)", reason);
        Assert.Contains("--target argmax", reason);
    }

    [Fact]
    public void Tokens_outside_the_models_vocabulary_are_refused()
    {
        // A model whose output layer is smaller than the tokenizer cannot answer "circle" (331) or "banana" (315).
        Assert.Null(TargetResolver.SingleToken("circle", Tok, vocab: 300));
        Assert.Null(TargetResolver.SingleToken("banana", Tok, vocab: 315));
        Assert.Equal(315, TargetResolver.SingleToken("banana", Tok, vocab: 316));
        Assert.Equal(264, TargetResolver.SingleToken("is", Tok, vocab: 300));
    }
}
