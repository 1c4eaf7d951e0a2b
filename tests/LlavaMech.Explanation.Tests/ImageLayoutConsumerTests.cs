using System.Text.Json.Nodes;
using LlavaMech.Analysis;
using LlavaMech.Model;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Explanation.Tests;

/// <summary>
/// A model with strategy full has 37 image tokens: the class token, then the 6 x 6 grid. 37 is neither a square nor
/// read right as one plus a square by a count-based guess everywhere (occlusion refused it, the figure was skipped);
/// every consumer now reads the grid from the input's layout.
/// </summary>
public class ImageLayoutConsumerTests : IDisposable
{
    private const string Prompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";
    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-layout-").FullName;

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    private string FullStrategyModel()
    {
        var dir = Path.Combine(_tmp, "full");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Fixtures.Model("tiny-llava-mha")))
            if (!Path.GetFileName(f).StartsWith("golden_")) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
        cfg["vision_feature_select_strategy"] = "full";
        cfg["image_seq_length"] = 37;
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        return dir;
    }

    [Fact]
    public void Heatmap_figure_occlusion_and_pointing_use_the_grid_after_the_class_token()
    {
        using var model = LoadedModel.Load(FullStrategyModel());
        using var analyzer = new ExampleAnalyzer(model);
        using var scope = NewDisposeScope();
        var input = model.Prepare(Prompt, Fixtures.File("tiny-llava-mha", "red_circle.png"));
        var layout = input.ImageLayout!;
        Assert.Equal((37, true, 6, 6), (layout.Count, layout.HasCls, layout.Grid.Rows, layout.Grid.Cols));

        var a = analyzer.Analyze(input, new StatisticsOptions { TopKHeads = 1, Neurons = new NeuronOptions(NeuronRoute.None) });
        var s = a.Statistics;
        Assert.Equal(6, s.Image!.Heatmap.Length);
        Assert.All(s.Image.Heatmap, row => Assert.Equal(6, row.Length));
        // The statistics' heatmap is the top head's scores at the 36 patch positions (not the class token), min-max, / sum.
        var scores = s.PositionsOf(s.TopHeads[0].Layer, s.TopHeads[0].Head)!;
        var atPatches = layout.GridPositions().Select(p => scores[p]).ToArray();
        var expected = Heatmaps.MinMaxThenSum(atPatches);
        var heat = s.Image.Heatmap.SelectMany(r => r).ToArray();
        for (int i = 0; i < 36; i++) Assert.Equal(expected[i], heat[i], 6);

        var map = ExplainReport.LogIncreaseGrid(a, 1)!.Value;
        Assert.Equal(6, map.Side);
        Assert.Equal(Heatmaps.LogIncrease(s, 1).Skip(1), map.Grid);
        var outDir = Directory.CreateDirectory(Path.Combine(_tmp, "explain")).FullName;
        ExplainReport.WriteFigures(model, a, outDir, 1);
        Assert.True(new FileInfo(Path.Combine(outDir, "explain.png")).Length > 1000, "the three-panel figure is drawn on the 6 x 6 grid");

        // Occlusion of a patch with a 3 x 3 window removes its grid neighbours; the class token is removed alone.
        var ctx = new ImageTokenAttribution(model, input, s.TargetId, batchSize: 37);
        var drops = ctx.Occlusion(window: 3);
        Assert.Equal(37, drops.Length);
        Assert.All(drops, d => Assert.True(float.IsFinite(d)));
        var single = ctx.Occlusion(window: 1);
        using (var removeCls = zeros(1, 37, dtype: ScalarType.Bool))
        {
            removeCls[0, 0] = tensor(true);
            Assert.Equal(ctx.OriginalLogProb() - ctx.TargetLogProbs(ctx.WithPatchesRemoved(removeCls))[0], single[0], 4);
            Assert.Equal(single[0], drops[0], 4);
        }

        // Pointing: the class token carries no patch, so a map peaked there hits no object.
        int[] firstPatch = [layout.Grids[0].TokenIndex(0, 0)];   // the object: patch (0, 0) of the grid
        var peakAtCls = new float[37];
        peakAtCls[0] = 1;
        Assert.False(MethodComparison.PointingHit(peakAtCls, layout, firstPatch));
        var peakAtFirstPatch = new float[37];
        peakAtFirstPatch[1] = 1;
        Assert.True(MethodComparison.PointingHit(peakAtFirstPatch, layout, firstPatch));
        Assert.Equal(1.0, MethodComparison.MassInBox(peakAtFirstPatch, layout, firstPatch));
    }
}
