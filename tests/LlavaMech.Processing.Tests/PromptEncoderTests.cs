using LlavaMech.Testing;

namespace LlavaMech.Processing.Tests;

public sealed class PromptEncoderTests
{
    private static PromptEncoder For(Golden g, ITextTokenizer tok)
    {
        var (bos, image, seq, max) = g.ModelNumbers();
        return new PromptEncoder(tok, bos, image, seq, max, g.Dir);
    }

    private static void AssertGolden(Golden g, ITextTokenizer tok)
    {
        var enc = For(g, tok).Encode(g.Prompt, hasImage: g.Image != null);
        var expected = g.Tensors.I64("input_ids");
        Assert.Equal(expected, enc.InputIds);
        Assert.Equal(g.Json.GetProperty("seq_len").GetInt32(), enc.InputIds.Length);
        Assert.Equal(g.Json.GetProperty("num_image_tokens").GetInt32(), enc.ImagePositions.Length);
        if (g.Tensors.Has("image_positions"))
            Assert.Equal(g.Tensors.I64("image_positions").Select(v => (int)v), enc.ImagePositions);
        else
            Assert.Empty(enc.ImagePositions);
    }

    [Theory]
    [MemberData(nameof(Golden.AllCases), MemberType = typeof(Golden))]
    public void Golden_input_ids_through_tokenizer_json(string model, string name)
    {
        var g = Golden.Load(model, name);
        var tok = TokenizerLoader.Load(g.Dir);
        Assert.IsType<HuggingFaceTokenizer>(tok);
        AssertGolden(g, tok);
    }

    [Theory]
    [MemberData(nameof(Golden.AllCases), MemberType = typeof(Golden))]
    public void Golden_input_ids_through_sentencepiece_fallback(string model, string name)
    {
        var g = Golden.Load(model, name);
        AssertGolden(g, TokenizerTests.SentencePieceOnly(model));
    }

    private static readonly Lazy<ITextTokenizer> Tok = new(() => TokenizerLoader.Load(Fixtures.Model("tiny-llava-mha")));

    private static PromptEncoder Vision(int maxPositions = 1024) =>
        new(Tok.Value, bosId: 1, imageTokenId: 600, imageSeqLength: 36, maxPositions, Fixtures.Model("tiny-llava-mha"));

    private static PromptEncoder TextOnly() =>
        new(Tok.Value, bosId: 1, imageTokenId: null, imageSeqLength: 0, maxPositions: 1024, Fixtures.Model("tiny-vicuna"));

    [Fact]
    public void Image_placeholder_at_the_start()
    {
        var enc = Vision().Encode("<image>\nDescribe.", hasImage: true);
        Assert.Equal(1, enc.InputIds[0]);
        Assert.Equal(Enumerable.Range(1, 36), enc.ImagePositions);
        Assert.All(enc.ImagePositions, p => Assert.Equal(600, enc.InputIds[p]));
        Assert.Equal(Tok.Value.EncodeAfterSpecialToken("\nDescribe.").Select(i => (long)i), enc.InputIds[37..]);
    }

    [Fact]
    public void Vision_model_takes_text_only_prompts_without_an_image()
    {
        var enc = Vision().Encode("The color of the sky is", hasImage: false);
        Assert.Equal([1L, 274, 270, 269, 261, 326, 264], enc.InputIds);
        Assert.Empty(enc.ImagePositions);
    }

    [Fact]
    public void Error_vision_prompt_without_placeholder()
    {
        var e = Assert.Throws<ProcessingException>(() => Vision().Encode("USER: What is it?\nASSISTANT:", hasImage: true));
        Assert.StartsWith("prompt has no <image> placeholder", e.Message);
    }

    [Fact]
    public void Error_more_than_one_placeholder()
    {
        var e = Assert.Throws<ProcessingException>(() => Vision().Encode("USER: <image> and <image>\nASSISTANT:", hasImage: true));
        Assert.Contains("prompt has 2 <image> placeholders", e.Message);
        Assert.Contains("exactly one", e.Message);
    }

    [Fact]
    public void Error_placeholder_without_image()
    {
        var e = Assert.Throws<ProcessingException>(() => Vision().Encode("USER: <image>\nWhat?", hasImage: false));
        Assert.Contains("<image> placeholder", e.Message);
        Assert.Contains("no image was given", e.Message);
    }

    [Fact]
    public void Error_text_only_model_given_placeholder()
    {
        var e = Assert.Throws<ProcessingException>(() => TextOnly().Encode("USER: <image>\nWhat?", hasImage: true));
        Assert.Contains("<image>", e.Message);
        Assert.Contains("text-only", e.Message);
        Assert.Contains(Fixtures.Model("tiny-vicuna"), e.Message);
        e = Assert.Throws<ProcessingException>(() => TextOnly().Encode("USER: <image>\nWhat?", hasImage: false));
        Assert.Contains("text-only", e.Message);
        e = Assert.Throws<ProcessingException>(() => TextOnly().Encode("USER: What?", hasImage: true));
        Assert.Contains("text-only", e.Message);
        Assert.Contains("cannot take an image", e.Message);
    }

    [Fact]
    public void Error_longer_than_max_positions()
    {
        const string prompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";
        Assert.Equal(61, Vision(61).Encode(prompt, hasImage: true).InputIds.Length);
        var e = Assert.Throws<ProcessingException>(() => Vision(60).Encode(prompt, hasImage: true));
        Assert.Contains("61 tokens", e.Message);
        Assert.Contains("limit of 60", e.Message);
        Assert.Contains("max_position_embeddings", e.Message);
    }

    [Fact]
    public void A_50_MB_prompt_is_refused_from_its_length_before_tokenizing()
    {
        var g = Golden.Load(Golden.AllCases.First()[0].ToString()!, Golden.AllCases.First()[1].ToString()!);
        var enc = For(g, TokenizerLoader.Load(g.Dir));
        var (_, _, _, max) = g.ModelNumbers();
        string prompt = "USER: " + string.Concat(Enumerable.Repeat("What is the color of the circle? ", 1_500_000)) + "\nASSISTANT:";
        Assert.True(prompt.Length > 45_000_000);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ProcessingException>(() => enc.Encode(prompt, hasImage: false));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains($"prompt is {prompt.Length} characters long", e.Message);
        Assert.Contains($"over the limit of {max} positions (max_position_embeddings)", e.Message);
        Assert.Contains("(not tokenized)", e.Message);
        Assert.True(allocated < 16L << 20, $"allocated {allocated >> 20} MiB");   // the vocabulary scan, not the prompt
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"{clock.Elapsed}");
    }

    [Fact]
    public void The_token_cap_is_checked_on_the_token_count_below_the_length_bound()
    {
        var g = Golden.Load(Golden.AllCases.First()[0].ToString()!, Golden.AllCases.First()[1].ToString()!);
        var enc = For(g, TokenizerLoader.Load(g.Dir));
        const string prompt = "USER: What is the color of the banana?\nASSISTANT: The color of the banana is";
        int n = enc.Encode(prompt, hasImage: false).InputIds.Length;
        Assert.Equal(n, enc.Encode(prompt, hasImage: false, maxTokens: n).InputIds.Length);
        var e = Assert.Throws<ProcessingException>(() => enc.Encode(prompt, hasImage: false, maxTokens: n - 1));
        Assert.Equal($"prompt is {n} tokens long, more than the limit of {n - 1} tokens (--max-prompt-tokens)", e.Message);
        // A cap above the model's limit is the model's limit.
        Assert.Equal(n, enc.Encode(prompt, hasImage: false, maxTokens: int.MaxValue).InputIds.Length);
        Assert.True(enc.MaxCharsPerToken >= 2, $"{enc.MaxCharsPerToken}");
    }
}
