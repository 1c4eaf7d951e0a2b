using System.Text.Json;
using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Datasets.Tests;

/// <summary>The words of the synthetic world against the toy model's tokenizer (602 entries).</summary>
public sealed class VocabularyTests(ITestOutputHelper output)
{
    private static readonly TinyBpe Bpe = new(Fixtures.File("tiny-llava-mha", "tokenizer.json"));

    [Fact]
    public void Bpe_helper_reproduces_the_fixture_ids()
    {
        using var golden = JsonDocument.Parse(File.ReadAllText(Fixtures.File("tiny-llava-mha", "golden_circle.json")));
        var expected = golden.RootElement.GetProperty("sentencepiece_ids_of_question").EnumerateArray().Select(v => v.GetInt32());
        Assert.Equal(expected, Bpe.Ids("What is the color of the circle?"));
    }

    [Fact]
    public void Every_colour_is_one_piece_after_is()
    {
        foreach (var c in SynthPalette.Colors)
            Assert.Equal(["▁is", "▁" + c.Name], Bpe.Encode("is " + c.Name));
    }

    [Fact]
    public void Question_shapes_are_one_piece_and_the_other_shapes_are_short()
    {
        foreach (var s in SynthPalette.SingleTokenShapes)
            Assert.Equal(["▁" + s], Bpe.Encode(s));
        foreach (var s in SynthPalette.Shapes)
        {
            var pieces = Bpe.Encode(s);
            output.WriteLine($"{s}: {string.Join(" ", pieces)}");
            Assert.DoesNotContain(pieces, p => p.StartsWith("<0x")); // no byte fallback
        }
    }

    [Fact]
    public void Text_qa_objects_tokenise_without_byte_fallback_and_four_are_single_pieces()
    {
        var single = new List<string>();
        foreach (var o in SynthPalette.TextQaObjects)
        {
            var pieces = Bpe.Encode(o.Name);
            output.WriteLine($"{o.Name} ({o.Color}): {string.Join(" ", pieces)}");
            Assert.DoesNotContain(pieces, p => p.StartsWith("<0x"));
            // The answer colour must not be spelled inside the question (e.g. "blueberry" = ▁blue b er r y).
            Assert.DoesNotContain("▁" + o.Color, pieces);
            if (pieces.Count == 1)
                single.Add(o.Name);
        }
        Assert.Equal(["apple", "banana", "fox", "sky"], single.Order());
    }
}
