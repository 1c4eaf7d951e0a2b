using LlavaMech.Cli.Commands;
using LlavaMech.Processing;
using LlavaMech.Runtime;
using LlavaMech.Testing;

namespace LlavaMech.Cli.Tests;

/// <summary>
/// Answers resolve to the token the model answers with. The toy model's tokenizer has both "red" (a
/// word-internal piece) and "▁red" (the word after a space): "The color of the circle is red" ends in
/// "▁red", so --target expected, the pipeline's accuracy and --target red must all pick "▁red".
/// </summary>
public class TargetResolutionTests
{
    private static readonly string[] Colours = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray"];

    [Theory]
    [InlineData("datasets/shapes-colors-mini/toy-llava")]
    [InlineData("tests/fixtures/tiny-llava-mha")]
    public void A_colour_answer_resolves_to_its_word_start_piece(string model)
    {
        var tok = TokenizerLoader.Load(Path.Combine(Fixtures.RepoRoot, model));
        const int vocab = 602;
        foreach (var c in Colours)
        {
            int wordStart = tok.TokenToId("\u2581" + c) ?? throw new InvalidOperationException($"no ▁{c} in {model}");
            Assert.Equal(wordStart, TargetResolver.SingleToken(c, tok, vocab));
            Assert.Equal(wordStart, TargetResolver.FirstToken(c, tok, vocab));
            Assert.Equal(wordStart, TargetResolver.Resolve(c, tok, vocab));
            Assert.Equal(wordStart, TargetResolver.Resolve("\u2581" + c, tok, vocab));
        }
        // The case that went wrong: a bare piece that is not the word.
        if (tok.TokenToId("red") is { } bare) Assert.NotEqual(bare, TargetResolver.SingleToken("red", tok, vocab));
    }

    [Fact]
    public void Run_defaults_to_the_toy_model_on_the_bundled_set()
    {
        var r = CliRunner.Run("run", "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("(default: datasets/shapes-colors-mini/toy-llava)", r.Stdout);
        Assert.Contains("(default: datasets/shapes-colors-mini/manifest.jsonl)", r.Stdout);
        Assert.Contains("(default: out/demo)", r.Stdout);
    }
}
