using LlavaMech.Testing;

namespace LlavaMech.Checkpoints.Tests;

/// <summary>What inspect reports, from the config and the safetensors headers alone.</summary>
public class CheckpointSummaryTests
{
    [Fact]
    public void The_published_7b_config_without_weights_has_its_known_sizes()
    {
        var s = CheckpointSummary.Inspect(Fixtures.Model("llava-1.5-7b-hf"));
        Assert.Equal(7_063_427_072, s.Parameters);
        Assert.Equal(2 * s.Parameters, s.BytesFloat16);
        Assert.Equal(4 * s.Parameters, s.BytesFloat32);
        Assert.Equal((32, 32, 128, 4096, 32064), (s.DecoderLayers, s.Heads, s.HeadDim, s.Hidden, s.Vocab));
        Assert.Equal(576, s.ImageTokens);   // (336 / 14)^2 patches, CLS dropped by the "default" strategy
        Assert.False(s.WeightsChecked);
        Assert.Null(s.WeightDtypes);
    }

    [Fact]
    public void A_folder_with_weights_has_them_checked_against_the_config()
    {
        var s = CheckpointSummary.Inspect(Fixtures.Model("tiny-llava-mha"));
        Assert.True(s.WeightsChecked);
        Assert.True(s.WeightTensors > 0);
        Assert.Equal("Llava", s.Kind);
        Assert.NotNull(s.WeightDtypes);
    }
}
