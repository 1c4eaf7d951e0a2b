using LlavaMech.Model.Tests;

namespace LlavaMech.Hooks.Tests;

public class PositionSelectorTests
{
    [Fact]
    public void All_and_last_resolve_without_explicit_positions()
    {
        Assert.Null(PositionSelector.All.Resolve(61));
        Assert.Equal([60L], PositionSelector.Last.Resolve(61)!);
        Assert.Equal([0L], PositionSelector.Last.Resolve(1)!);
        Assert.Equal("all", PositionSelector.All.ToString());
        Assert.Equal("last", PositionSelector.Last.ToString());
        Assert.Null(PositionSelector.All.Positions);
    }

    [Fact]
    public void Explicit_positions_count_negative_ones_from_the_end_and_keep_their_order()
    {
        var sel = PositionSelector.At([0, 5, -1, -7]);
        Assert.Equal("explicit", sel.Kind);
        Assert.Equal("[0,5,-1,-7]", sel.ToString());
        Assert.Equal([0L, 5, 6, 0], sel.Resolve(7)!);
        Assert.Equal([0L, 5, 60, 54], sel.Resolve(61)!);
    }

    [Theory]
    [InlineData(7, 7)]
    [InlineData(-8, 7)]
    [InlineData(1, 1)]
    public void A_position_outside_the_sequence_is_refused_with_both_numbers(int position, int seqLen)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => PositionSelector.At([position]).Resolve(seqLen));
        Assert.Contains($"position {position}", e.Message);
        Assert.Contains($"sequence of {seqLen}", e.Message);
    }

    [Fact]
    public void An_empty_selection_is_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => PositionSelector.At([]));
        Assert.Contains("at least one position", e.Message);
    }

    /// <summary>
    /// On the prepared circle prompt (61 positions, 36 image tokens after BOS and "USER:"), a selection of the image
    /// positions resolves to exactly the positions the reference processor gave the image (golden image_positions).
    /// </summary>
    [Fact]
    public void The_image_positions_of_a_real_prepared_input_resolve_to_the_reference_positions()
    {
        var m = ModelCache.Get("tiny-llava-mha");
        using var g = new Golden("tiny-llava-mha", "circle");
        var input = m.Prepare(g.Prompt, g.ImagePath);
        Assert.Equal(g.SeqLenPlus(0), input.SeqLen);
        var golden = g["image_positions"].data<long>().ToArray();
        Assert.Equal(36, golden.Length);

        var resolved = PositionSelector.At(input.ImagePositions).Resolve(input.SeqLen)!;
        Assert.Equal(golden, resolved);
        // the same positions counted from the end
        var fromEnd = PositionSelector.At(input.ImagePositions.Select(p => p - input.SeqLen)).Resolve(input.SeqLen)!;
        Assert.Equal(golden, fromEnd);
        // and the last position of the prompt is the one the statistics read
        Assert.Equal([(long)g.SeqLenPlus(0) - 1], PositionSelector.Last.Resolve(input.SeqLen)!);
    }
}
