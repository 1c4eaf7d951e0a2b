using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using LlavaMech.Testing;

namespace LlavaMech.Model.Tests;

/// <summary>The image-token layout of a prepared input comes from the configuration: image_size / patch_size patches per side, at the image's offset.</summary>
public class ImageLayoutTests
{
    [Theory]
    [InlineData("tiny-llava-mha", "circle", 6)]
    [InlineData("tiny-llava-336", "photo", 24)]
    public void A_prepared_input_carries_its_grid_from_the_config(string model, string caseId, int side)
    {
        using var g = new Golden(model, caseId);
        var config = ModelConfig.Load(g.ModelDir);
        Assert.Equal(side, config.Vision!.ImageSize / config.Vision.PatchSize);
        using var m = LoadedModel.Load(g.ModelDir);
        var input = m.Prepare(g.Prompt, g.ImagePath);
        var layout = input.ImageLayout!;
        var golden = g["image_positions"].data<long>().Select(p => (int)p).ToArray();
        Assert.Equal(golden[0], layout.Offset);
        Assert.Equal(golden, layout.Positions);
        Assert.Equal((side, side, false), (layout.Grid.Rows, layout.Grid.Cols, layout.HasCls));
        Assert.Equal(config.ImageSeqLength, layout.Count);
        Assert.Equal(new GridCell(0, 0, 0), layout.CellAt(golden[0]));
        Assert.Equal(new GridCell(0, side - 1, side - 1), layout.CellAt(golden[^1]));
        Assert.Null(layout.CellAt(golden[0] - 1));
        Assert.Null(m.Prepare("USER: What is the color of the sky?\nASSISTANT:", null).ImageLayout);
    }

    [Fact]
    public void The_7b_config_has_a_24_by_24_grid_of_576_tokens()
    {
        var config = ModelConfig.Load(Fixtures.Model("llava-1.5-7b-hf"));
        var layout = LlavaImageLayout.For(config, offset: 5);
        Assert.Equal((24, 24, false, 576), (layout.Grid.Rows, layout.Grid.Cols, layout.HasCls, layout.Count));
        Assert.Equal(config.ImageSeqLength, layout.Count);
        Assert.Equal(Enumerable.Range(5, 576), layout.Positions);
        Assert.Equal(new GridCell(0, 1, 0), layout.CellAt(5 + 24));
    }

    [Fact]
    public void Strategy_full_puts_the_class_token_before_the_grid()
    {
        var config = ModelConfig.Load(Fixtures.Model("llava-1.5-7b-hf")) with { VisionFeatureSelectStrategy = "full", ImageSeqLength = 577 };
        var layout = LlavaImageLayout.For(config, offset: 5);
        // 577 tokens: round(sqrt(577)) = 24 guessed a 24 x 24 grid starting at the class token, one patch off.
        Assert.Equal((24, 24, true, 577), (layout.Grid.Rows, layout.Grid.Cols, layout.HasCls, layout.Count));
        Assert.Null(layout.CellAt(5));
        Assert.Equal(new GridCell(0, 0, 0), layout.CellAt(6));
        Assert.Equal(new GridCell(0, 23, 23), layout.CellAt(5 + 576));
        Assert.Equal(6, layout.GridPositions()[0]);
    }

    [Fact]
    public void An_image_seq_length_that_disagrees_with_the_grid_is_refused_naming_the_config()
    {
        var config = ModelConfig.Load(Fixtures.Model("llava-1.5-7b-hf")) with { ImageSeqLength = 580 };
        var e = Assert.Throws<CheckpointException>(() => LlavaImageLayout.For(config, 5));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("image_seq_length = 580", e.Message);
        Assert.Contains("24 x 24", e.Message);
    }
}
