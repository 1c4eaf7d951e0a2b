using LlavaMech.Hooks;
using LlavaMech.Processing;
using LlavaMech.Testing;
using SkiaSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaMech.Model.Tests;

/// <summary>
/// The LLaVA-NeXT family (docs/METHOD_NEXT.md) against transformers 4.56 on tiny-llava-next-vicuna: the family is chosen by
/// config.json, the inputs are the processor's, the features per tile and packed are the model's, the layout is the
/// reference's image_token_layout. (The hooked pass and logits are in <see cref="ParityTests"/>, whose cases include these.)
/// </summary>
public class LlavaNextTests(ITestOutputHelper output)
{
    private const string Next = "tiny-llava-next-vicuna";

    [Fact]
    public void The_family_is_chosen_by_model_type()
    {
        Assert.Same(LlavaNextFamily.Instance, ModelFamilies.Resolve(Fixtures.Model(Next)));
        var m = ModelCache.Get(Next);
        Assert.Same(LlavaNextFamily.Instance, m.Family);
        Assert.True(m.HasVision);
        Assert.IsType<LlavaNextForConditionalGeneration>(m.Vision);
    }

    [Theory]
    [MemberData(nameof(Golden.NextVisionCases), MemberType = typeof(Golden))]
    public void Prepared_input_equals_the_reference_exactly(string model, string caseId)
    {
        using var g = new Golden(model, caseId);
        var m = ModelCache.Get(model);
        var input = m.Prepare(g.Prompt, g.ImagePath);
        Assert.Equal(g["input_ids"].data<long>().ToArray(), input.InputIds);
        Assert.Equal(g["image_positions"].data<long>().Select(p => (int)p).ToArray(), input.ImagePositions);
        using var pixels = tensor(input.PixelValues!, g["pixel_values"].shape);
        double err = Close.MaxAbs(g["pixel_values"], pixels);
        output.WriteLine($"{caseId}: max |pixel_values - golden| = {err:G3}");
        Assert.True(err <= 1e-6, $"pixel_values differ by {err}");
        var sizes = g["image_sizes"].data<long>().ToArray();
        Assert.Equal((sizes[0], sizes[1]), ((long)input.ImageLayout!.Tiling!.ImageHeight, (long)input.ImageLayout.Tiling.ImageWidth));
    }

    [Theory]
    [MemberData(nameof(Golden.NextVisionCases), MemberType = typeof(Golden))]
    public void Layout_parts_rows_and_columns_equal_the_reference(string model, string caseId)
    {
        using var g = new Golden(model, caseId);
        var m = ModelCache.Get(model);
        var layout = m.Prepare(g.Prompt, g.ImagePath).ImageLayout!;
        var golden = g["image_token_layout"].to(ScalarType.Int64).data<long>().ToArray();
        Assert.Equal(golden.Length, 3 * layout.Count);
        for (int k = 0; k < layout.Count; k++)
        {
            var place = layout.PlaceOf(k);
            Assert.Equal((golden[3 * k], golden[3 * k + 1], golden[3 * k + 2]), ((long)place.Part, (long)place.Row, (long)place.Col));
        }
    }

    [Theory]
    [MemberData(nameof(Golden.NextVisionCases), MemberType = typeof(Golden))]
    public void Projector_output_per_tile_and_packed_equal_the_reference(string model, string caseId)
    {
        using var g = new Golden(model, caseId);
        var m = ModelCache.Get(model);
        var net = (LlavaNextForConditionalGeneration)m.Vision!;
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var input = m.Prepare(g.Prompt, g.ImagePath);
        var (_, pixels) = m.ToTensors(input);
        var tiles = net.TileFeatures(pixels![0]);
        Close.Assert(g["image_features_tiles"], tiles, "projector output per tile");
        var packed = net.Pack(tiles, input.ImageLayout!.Tiling!);
        Close.Assert(g["image_features"], packed, "packed image features");
        output.WriteLine($"{caseId}: max |tiles - golden| = {Close.MaxAbs(g["image_features_tiles"], tiles):G3}, packed {Close.MaxAbs(g["image_features"], packed):G3}");
    }

    [Fact]
    public void Image_tokens_that_differ_from_the_packed_features_are_refused()
    {
        using var g = new Golden(Next, "wide_circle");
        var m = ModelCache.Get(Next);
        var input = m.Prepare(g.Prompt, g.ImagePath);
        var (ids, pixels) = m.ToTensors(input);
        using var fewer = ids.clone();
        fewer[0, input.ImagePositions[^1]] = 5;   // one image token less
        var e = Assert.Throws<ArgumentException>(() => m.Forward(fewer, pixels, null, null, [input.ImageLayout]));
        Assert.Contains("image tokens but the image gives", e.Message);
        var noLayout = Assert.Throws<ArgumentException>(() => m.Forward(ids, pixels));
        Assert.Contains("image layout", noLayout.Message);
    }

    [Fact]
    public void A_prompt_with_two_image_placeholders_for_one_image_is_refused()
    {
        using var g = new Golden(Next, "wide_circle");
        var m = ModelCache.Get(Next);
        var e = Assert.Throws<ProcessingException>(() => m.Prepare("USER: <image><image>\nWhat?\nASSISTANT:", g.ImagePath));
        Assert.Contains("2 <image> placeholders", e.Message);
    }

    [Fact]
    public void A_one_by_ten_thousand_image_runs_with_newlines_only_in_its_grid()
    {
        var path = Path.Combine(Path.GetTempPath(), $"llavamech-thin-{Guid.NewGuid():N}.png");
        try
        {
            using (var bmp = new SKBitmap(1, 10000))
            {
                bmp.Erase(new SKColor(200, 30, 30));
                using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
                File.WriteAllBytes(path, data.ToArray());
            }
            var m = ModelCache.Get(Next);
            var input = m.Prepare("USER: <image>\nWhat is the color?\nASSISTANT:", path);
            var t = input.ImageLayout!.Tiling!;
            Assert.Equal(0, t.KeptCols);                               // transformers keeps no column either
            Assert.Equal(36 + t.KeptRows, input.ImageLayout.Count);     // the base tile and one newline per row
            Assert.Equal(ImagePart.Newline, input.ImageLayout.PlaceOf(36).Part);
            using var scope = NewDisposeScope();
            var logits = m.Forward(input);
            Assert.True(logits.isfinite().all().item<bool>());
        }
        finally { File.Delete(path); }
    }
}
