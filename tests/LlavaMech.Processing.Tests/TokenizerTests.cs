using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Processing.Tests;

public sealed class TokenizerTests
{
    private readonly ITestOutputHelper _out;

    public TokenizerTests(ITestOutputHelper output) => _out = output;

    private static readonly Lazy<ITextTokenizer> Hf = new(() => TokenizerLoader.Load(Fixtures.Model("tiny-llava-mha")));
    private static readonly Lazy<ITextTokenizer> Sp = new(() => SentencePieceOnly("tiny-llava-mha"));

    /// <summary>The SentencePiece fallback of a model: its tokenizer.model (and tokenizer_config.json) without tokenizer.json.</summary>
    internal static ITextTokenizer SentencePieceOnly(string model)
    {
        var source = File.Exists(Fixtures.File(model, "tokenizer.model")) ? model : "tiny-llava-mha"; // tiny-vicuna has the same vocabulary, no .model
        var dir = Directory.CreateTempSubdirectory("llavamech-sp-").FullName;
        File.Copy(Fixtures.File(source, "tokenizer.model"), Path.Combine(dir, "tokenizer.model"));
        File.Copy(Fixtures.File(source, "tokenizer_config.json"), Path.Combine(dir, "tokenizer_config.json"));
        try
        {
            return TokenizerLoader.Load(dir); // everything is read at load time
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Loader_prefers_tokenizer_json_and_falls_back_to_sentencepiece()
    {
        Assert.IsType<HuggingFaceTokenizer>(Hf.Value);
        Assert.IsType<SentencePieceTextTokenizer>(Sp.Value);
    }

    [Fact]
    public void Vocabulary_bos_and_sizes()
    {
        Assert.Equal(1, Hf.Value.BosId);
        Assert.Equal(1, Sp.Value.BosId);
        Assert.Equal(602, Hf.Value.VocabSize);    // 600 pieces + <image> 600 + <pad> 601
        Assert.Equal(600, Sp.Value.VocabSize);    // the SentencePiece model alone
        Assert.Equal(600, Hf.Value.TokenToId("<image>"));
        Assert.Equal("<image>", Hf.Value.IdToToken(600));
        Assert.Null(Hf.Value.TokenToId("no such piece"));
        Assert.Equal("<id:9999>", Hf.Value.IdToToken(9999));
        Assert.Equal("<id:600>", Sp.Value.IdToToken(600));
        for (int id = 0; id < 600; id++)
        {
            var piece = Hf.Value.IdToToken(id);
            Assert.Equal(piece, Sp.Value.IdToToken(id));
            Assert.Equal(id, Hf.Value.TokenToId(piece));
            Assert.Equal(id, Sp.Value.TokenToId(piece));
        }
    }

    [Fact]
    public void Encode_adds_no_bos()
    {
        Assert.Equal([274, 270, 269, 261, 326, 264], Hf.Value.Encode("The color of the sky is"));
        Assert.Equal([274, 270, 269, 261, 326, 264], Sp.Value.Encode("The color of the sky is"));
        Assert.Empty(Hf.Value.Encode(""));
        Assert.Empty(Sp.Value.Encode(""));
        Assert.Empty(Hf.Value.EncodeAfterSpecialToken(""));
    }

    [Theory]
    [MemberData(nameof(Golden.AllCases), MemberType = typeof(Golden))]
    public void Target_and_top5_tokens_of_the_goldens(string model, string name)
    {
        var g = Golden.Load(model, name);
        var tok = TokenizerLoader.Load(g.Dir);
        int target = g.Json.GetProperty("target_id").GetInt32();
        Assert.Equal(g.Json.GetProperty("target_token").GetString(), tok.IdToToken(target));
        Assert.Equal(tok.IdToToken(target), Sp.Value.IdToToken(target));
        var top5 = g.Json.GetProperty("top5_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(target, top5[0]);
        foreach (var id in top5)
        {
            Assert.DoesNotContain("<id:", tok.IdToToken(id));
            Assert.Equal(tok.Decode([id]), Sp.Value.Decode([id]));
        }
        _out.WriteLine($"{name}: target {target} {tok.IdToToken(target)} -> \"{tok.Decode([target])}\"; top5 \"{tok.Decode(top5)}\"");
    }

    [Fact]
    public void Decode_is_readable()
    {
        Assert.Equal("um", Hf.Value.Decode([323]));                // "▁um": the Strip decoder drops the leading space
        Assert.Equal("\uFFFD", Hf.Value.Decode([146]));            // "<0x8F>": a lone continuation byte
        var ids = Hf.Value.Encode("The color of the sky is");
        Assert.Equal("The color of the sky is", Hf.Value.Decode(ids));
        Assert.Equal("The color of the sky is", Sp.Value.Decode(ids));
        // BOS, the image token and unknown ids are skipped.
        var withSpecials = new List<int> { 1 };
        withSpecials.AddRange(ids);
        withSpecials.AddRange([600, 601, 9999, -1]);
        Assert.Equal("The color of the sky is", Hf.Value.Decode(withSpecials));
        Assert.Equal("The color of the sky is", Sp.Value.Decode(withSpecials));
    }

    public static IEnumerable<object[]> Texts =>
    [
        ["What is the color of the circle?"],
        ["\nWhat is the color of the circle?\nASSISTANT: The color of the circle is"],
        [" leading space"],
        ["  two leading spaces, trailing  "],
        ["a  b   c\t\td"],
        ["héllo wörld — 日本語 😀 ünïcödé"],
        ["Numbers 12345 and punctuation!?;:'\"()[]{}"],
        ["USER: "],
        ["line1\nline2\r\nline3"],
        ["special </s> inside <s>text<unk>"],
        ["ends with newline\n"],
        ["▁already▁escaped"],
    ];

    [Theory]
    [MemberData(nameof(Texts))]
    public void Sentencepiece_fallback_matches_tokenizer_json(string text)
    {
        Assert.Equal(Hf.Value.Encode(text), Sp.Value.Encode(text));
        Assert.Equal(Hf.Value.EncodeAfterSpecialToken(text), Sp.Value.EncodeAfterSpecialToken(text));
        var ids = Hf.Value.Encode(text);
        Assert.Equal(Hf.Value.Decode(ids), Sp.Value.Decode(ids));
    }

    [Fact]
    public void Special_tokens_written_in_text_become_their_ids()
    {
        var ids = Hf.Value.Encode("a</s>b");
        Assert.Contains(2, ids);
        Assert.Equal(ids, Sp.Value.Encode("a</s>b"));
    }

    [Fact]
    public void After_a_special_token_no_prefix_space_is_added()
    {
        // Inside "USER: <image>\nWhat ...", the text after <image> starts with "<0x0A>", "W", "hat": no "▁".
        // At the start of a text, Metaspace puts "▁" (555) in front.
        Assert.Equal([555, 13, 583, 279], Hf.Value.Encode("\nWhat"));
        Assert.Equal([13, 583, 279], Hf.Value.EncodeAfterSpecialToken("\nWhat"));
        Assert.Equal([13, 583, 279], Sp.Value.EncodeAfterSpecialToken("\nWhat"));
    }

    [Theory]
    [InlineData("tiny-llava-mha")]
    [InlineData("tiny-llava-336")]
    public void Sentencepiece_ids_of_the_question(string model)
    {
        // fixture.json sp_ids: SentencePiece's ids for the bare question (with its dummy prefix "▁"), which are also
        // the tokenizer.json ids of the question at the start of a text. Inside the image prompt the question follows
        // "<image>\n", so its first word is tokenized without "▁" ("W" "hat" rather than "▁What"); the rest is the same.
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Fixtures.File(model, "fixture.json")));
        var hf = TokenizerLoader.Load(Fixtures.Model(model));
        var sp = SentencePieceOnly(model);
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            var prompt = c.GetProperty("prompt").GetString()!;
            var spIds = c.GetProperty("sp_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int start = prompt.IndexOf("<image>\n", StringComparison.Ordinal) + "<image>\n".Length;
            var question = prompt[start..prompt.IndexOf("\nASSISTANT", StringComparison.Ordinal)];
            Assert.Equal(spIds, sp.Encode(question));
            Assert.Equal(spIds, hf.Encode(question));
            Assert.Equal("▁What", hf.IdToToken(spIds[0]));

            var g = Golden.Load(model, c.GetProperty("id").GetString()!);
            Assert.Equal(spIds, g.Json.GetProperty("sentencepiece_ids_of_question").EnumerateArray().Select(e => e.GetInt32()));
            var golden = g.Tensors.I64("input_ids").Select(v => (int)v).ToArray();
            var inPrompt = hf.EncodeAfterSpecialToken("\n" + question);
            Assert.Equal(13, inPrompt[0]);
            Assert.Equal(spIds[1..], inPrompt[^(spIds.Length - 1)..]);
            Assert.True(ContainsRun(golden, inPrompt), "golden input_ids hold the question as encoded after <image>");
        }
    }

    private static bool ContainsRun(int[] haystack, int[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return true;
        return false;
    }

    [Fact]
    public void Loader_errors_name_the_folder_or_file()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<ProcessingException>(() => TokenizerLoader.Load(tmp.Path));
        Assert.Contains(tmp.Path, e.Message);
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Contains("tokenizer.model", e.Message);

        var missing = Path.Combine(tmp.Path, "nope");
        e = Assert.Throws<ProcessingException>(() => TokenizerLoader.Load(missing));
        Assert.Contains(missing, e.Message);
        Assert.Contains("does not exist", e.Message);

        File.WriteAllText(tmp.File("tokenizer.model"), "this is not a protobuf");
        e = Assert.Throws<ProcessingException>(() => TokenizerLoader.Load(tmp.Path));
        Assert.Contains(tmp.File("tokenizer.model"), e.Message);
        Assert.Contains("SentencePiece", e.Message);

        File.WriteAllText(tmp.File("tokenizer.json"), "{ not json");
        e = Assert.Throws<ProcessingException>(() => TokenizerLoader.Load(tmp.Path));
        Assert.Contains(tmp.File("tokenizer.json"), e.Message);

        File.WriteAllText(tmp.File("tokenizer.json"), "{\"version\": \"1.0\"}");
        e = Assert.Throws<ProcessingException>(() => TokenizerLoader.Load(tmp.Path));
        Assert.Contains(tmp.File("tokenizer.json"), e.Message);
        Assert.Contains("model", e.Message);
    }
}
