using System.Text.Json;
using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Processing.Tests;

/// <summary>LLaVA-NeXT's anyres input pipeline (docs/METHOD_NEXT.md) against transformers 4.56's processor.</summary>
public class AnyresImageProcessorTests(ITestOutputHelper output)
{
    private const string Next = "tiny-llava-next-vicuna";

    /// <summary>llava-v1.6's real grid: 336 px tiles of 14 px patches, five pinpoints.</summary>
    private static readonly (int, int)[] RealPinpoints = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

    [Theory]
    [InlineData(672, 672, 2928, 672, 672)]   // 2 x 2 tiles, nothing unpadded: 576 + 48*48 + 48
    [InlineData(300, 300, 1176, 336, 672)]   // ties [336, 672] with [672, 336]: the earlier wins; 576 + 24*24 + 24
    [InlineData(640, 427, 2144, 672, 672)]   // 48 x 48 unpadded to 32 x 48: 576 + 1536 + 32
    [InlineData(1000, 1000, 2928, 672, 672)]
    public void Real_llava_v16_token_counts(int w, int h, int tokens, int bestH, int bestW)
    {
        var plan = AnyresPlan.For(w, h, 336, 14, RealPinpoints);
        Assert.Equal((bestH, bestW), (plan.BestHeight, plan.BestWidth));
        Assert.Equal(tokens, plan.ImageTokens);
        Assert.Equal(576, plan.BaseTokens);
        Assert.Equal(plan.KeptRows, plan.NewlineTokens);
    }

    [Fact]
    public void A_one_by_ten_thousand_image_keeps_no_column_but_its_newlines()
    {
        // transformers: unpad_image keeps 0 of 48 columns; 24 rows of newlines remain (576 + 0 + 24).
        var plan = AnyresPlan.For(1, 10000, 336, 14, RealPinpoints);
        Assert.Equal((336, 672), (plan.BestHeight, plan.BestWidth));
        Assert.Equal((1, 336), (plan.ResizedWidth, plan.ResizedHeight));
        Assert.Equal(0, plan.KeptCols);
        Assert.Equal(600, plan.ImageTokens);
    }

    private static (int, int)[] ConfigPinpoints() =>
        JsonDocument.Parse(File.ReadAllText(Fixtures.File(Next, "config.json"))).RootElement.GetProperty("image_grid_pinpoints")
            .EnumerateArray().Select(p => (p[0].GetInt32(), p[1].GetInt32())).ToArray();

    [Theory]
    [InlineData("wide_circle")]
    [InlineData("tall_triangle")]
    [InlineData("square_near")]
    public void Pixel_values_and_plan_equal_the_reference(string caseId)
    {
        var g = Golden.Load(Next, caseId);
        var proc = AnyresImageProcessor.FromDirectory(g.Dir, ConfigPinpoints(), 14);
        var img = proc.PreprocessNext(Path.Combine(g.Dir, g.Image!));
        var plan = img.Plan;
        int[] Pair(string key) => g.Json.GetProperty(key).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(Pair("best_resolution_hw"), new[] { plan.BestHeight, plan.BestWidth });
        Assert.Equal(Pair("tile_grid_rows_cols"), new[] { plan.TileRows, plan.TileCols });
        Assert.Equal(Pair("resized_to_hw"), new[] { plan.ResizedHeight, plan.ResizedWidth });
        Assert.Equal(Pair("pad_top_left"), new[] { plan.PadTop, plan.PadLeft });
        Assert.Equal(Pair("feature_grid_rows_cols"), new[] { plan.FeatureRows, plan.FeatureCols });
        Assert.Equal(Pair("unpadded_grid_rows_cols"), new[] { plan.KeptRows, plan.KeptCols });
        Assert.Equal(g.Json.GetProperty("n_image_tokens").GetInt32(), plan.ImageTokens);
        Assert.Equal(g.Json.GetProperty("base_tokens").GetInt32(), plan.BaseTokens);
        Assert.Equal(g.Json.GetProperty("newline_tokens").GetInt32(), plan.NewlineTokens);

        Assert.Equal([1L, plan.Tiles, 3, 84, 84], g.Tensors.Shape("pixel_values"));
        var golden = g.Tensors.F32("pixel_values");
        Assert.Equal(golden.Length, img.Image.PixelValues.Length);
        double max = 0;
        for (int i = 0; i < golden.Length; i++) max = Math.Max(max, Math.Abs(golden[i] - img.Image.PixelValues[i]));
        output.WriteLine($"{caseId}: max |ours - pixel_values| = {max:G3} over {plan.Tiles} tiles");
        Assert.True(max <= 1e-6, $"{caseId}: max error {max} (base first, tiles row-major)");
    }

    [Fact]
    public void Pinpoints_that_disagree_with_config_json_are_named()
    {
        using var tmp = new TempDir();
        foreach (var f in Directory.GetFiles(Fixtures.Model(Next))) File.Copy(f, tmp.File(Path.GetFileName(f)));
        var e = Assert.Throws<ProcessingException>(() => AnyresImageProcessor.FromDirectory(tmp.Path, [(84, 168), (168, 84)], 14));
        Assert.Contains("preprocessor_config.json", e.Message);
        Assert.Contains("image_grid_pinpoints", e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void A_grid_pinpoint_not_a_multiple_of_the_tile_is_named()
    {
        using var tmp = new TempDir();
        foreach (var f in Directory.GetFiles(Fixtures.Model(Next))) File.Copy(f, tmp.File(Path.GetFileName(f)));
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(tmp.File("preprocessor_config.json")))!;
        json["image_grid_pinpoints"]![1]![0] = 170;
        File.WriteAllText(tmp.File("preprocessor_config.json"), json.ToJsonString());
        var pinpoints = ConfigPinpoints();
        pinpoints[1] = (170, 84);
        var e = Assert.Throws<ProcessingException>(() => AnyresImageProcessor.FromDirectory(tmp.Path, pinpoints, 14));
        Assert.Contains("preprocessor_config.json", e.Message);
        Assert.Contains("image_grid_pinpoints[1]", e.Message);
    }
}
