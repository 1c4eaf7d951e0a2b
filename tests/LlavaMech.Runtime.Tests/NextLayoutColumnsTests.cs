using LlavaMech.Explanation;
using LlavaMech.Model.Tests;
using LlavaMech.Runtime.Stats;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Tests;

/// <summary>
/// Where on the image: <c>position_stats</c> and <c>logit_lens</c> carry each image position's part (base / grid / newline)
/// and its row and column in that part's grid, equal to the reference's image_token_layout on LLaVA-NeXT and all
/// <c>base</c> on LLaVA-1.5; explain.json carries the same layout; the pipeline's rows are explain's.
/// </summary>
public class NextLayoutColumnsTests
{
    private static readonly string[] Parts = [ImageParts.Base, ImageParts.Grid, ImageParts.Newline];

    [Theory]
    [MemberData(nameof(Golden.NextVisionCases), MemberType = typeof(Golden))]
    public void Next_rows_and_explain_json_carry_the_reference_layout(string model, string caseId)
    {
        using var g = new Golden(model, caseId);
        var m = ModelCache.Get(model);
        var settings = new AnalysisSettings { TopHeads = 3 };
        using var pipeline = new PipelineAnalyzer(m);
        var work = PipelineAnalyzerTests.Work(g) with { Id = Explainer.ExampleId, MetadataJson = "{}", ImageRelative = Path.GetFileName(g.ImagePath), Line = 0 };
        var outcome = pipeline.Run(work, settings);
        Assert.False(outcome.Rejected, outcome.RejectReason);

        using var analyzer = new ExampleAnalyzer(m);
        using var scope = NewDisposeScope();
        var input = m.Prepare(g.Prompt, g.ImagePath);
        var explained = Explainer.Run(analyzer, input, settings, null);
        var rows = explained.Rows!;
        foreach (var table in StatisticCatalog.All)
            Assert.True(outcome.Rows!.All.Where(r => table.Tables.Any(t => t.RowType == r.GetType())).SequenceEqual(
                rows.All.Where(r => table.Tables.Any(t => t.RowType == r.GetType()))), $"{table.GetType().Name}: explain's rows differ from the pipeline's");

        var layout = g["image_token_layout"].to(ScalarType.Int64).data<long>().ToArray();
        var imagePositions = g["image_positions"].data<long>().Select(p => (int)p).ToArray();
        var expected = imagePositions.Select((p, k) => (p, (Parts[layout[3 * k]], (int?)layout[3 * k + 1], (int?)layout[3 * k + 2]))).ToDictionary(x => x.p, x => x.Item2);

        var positions = rows.Of<PositionStatRow>();
        Assert.NotEmpty(positions);
        foreach (var p in positions)
        {
            if (expected.TryGetValue(p.Position, out var e)) Assert.Equal(e, (p.ImagePart!, p.PatchRow, p.PatchCol));
            else Assert.Equal((null, null, null), (p.ImagePart, p.PatchRow, p.PatchCol));
            Assert.Equal(expected.ContainsKey(p.Position), p.IsImage);
        }
        var head = positions.GroupBy(p => (p.Layer, p.Head)).First().ToList();
        Assert.Equal(g.Json.GetProperty("base_tokens").GetInt32(), head.Count(p => p.ImagePart == ImageParts.Base));
        Assert.Equal(g.Json.GetProperty("newline_tokens").GetInt32(), head.Count(p => p.ImagePart == ImageParts.Newline));

        var lens = rows.Of<LogitLensRow>().Where(r => r.Rank == 0).ToList();
        Assert.Equal(imagePositions, lens.Select(r => r.Position));
        Assert.All(lens, r => Assert.Equal(expected[r.Position], (r.ImagePart!, r.PatchRow, r.PatchCol)));
        var goldenLens = g["logit_lens_image_top5"].to(ScalarType.Int64).data<long>().ToArray();
        Assert.Equal(Enumerable.Range(0, lens.Count).Select(k => (int)goldenLens[5 * k]), lens.Select(r => r.TokenId));

        var json = Explainer.ToJson(m, explained);
        var places = json["image_layout"]!["places"]!.AsArray();
        Assert.Equal(imagePositions.Length, places.Count);
        for (int k = 0; k < places.Count; k++)
            Assert.Equal(expected[imagePositions[k]], ((string)places[k]![0]!, (int?)places[k]![1], (int?)places[k]![2]));
        var tiling = json["image_layout"]!["tiling"]!;
        Assert.Equal(g.Json.GetProperty("unpadded_grid_rows_cols").EnumerateArray().Select(e => e.GetInt32()),
            tiling["unpadded_grid_rows_cols"]!.AsArray().Select(v => (int)v!));
    }

    [Fact]
    public void Llava_15_image_positions_are_all_base()
    {
        using var g = new Golden("tiny-llava-mha", "circle");
        var m = ModelCache.Get("tiny-llava-mha");
        using var analyzer = new ExampleAnalyzer(m);
        using var scope = NewDisposeScope();
        var explained = Explainer.Run(analyzer, m.Prepare(g.Prompt, g.ImagePath), new AnalysisSettings(), null);
        var image = explained.Rows!.Of<PositionStatRow>().Where(p => p.IsImage).ToList();
        Assert.NotEmpty(image);
        Assert.All(image, p => Assert.Equal(ImageParts.Base, p.ImagePart));
        Assert.All(explained.Rows!.Of<PositionStatRow>().Where(p => !p.IsImage), p => Assert.Null(p.ImagePart));
        Assert.Null(Explainer.ToJson(m, explained)["image_layout"]!["tiling"]);
    }

    [Theory]
    [MemberData(nameof(Golden.NextVisionCases), MemberType = typeof(Golden))]
    public void Part_shares_of_each_head_equal_the_reference_attention_and_position_increases(string model, string caseId)
    {
        using var g = new Golden(model, caseId);
        var m = ModelCache.Get(model);
        using var analyzer = new ExampleAnalyzer(m);
        using var scope = NewDisposeScope();
        var explained = Explainer.Run(analyzer, m.Prepare(g.Prompt, g.ImagePath), new AnalysisSettings(), null);
        var shares = explained.Rows!.Of<ImagePartShareRow>();
        var layout = g["image_token_layout"].to(ScalarType.Int64).data<long>().ToArray();
        var imagePositions = g["image_positions"].data<long>().Select(p => (int)p).ToArray();
        int[] PartPositions(int kind) => imagePositions.Where((p, k) => layout[3 * k] == kind).ToArray();
        var pattern = g["attn_weights_last_row"].to(ScalarType.Float64);                  // [L, H, T]
        Assert.Equal(m.Layers * m.Heads * 3, shares.Count);
        foreach (var head in shares.GroupBy(r => (r.Layer, r.Head)))
        {
            var row = pattern[head.Key.Layer, head.Key.Head].data<double>().ToArray();
            double total = imagePositions.Sum(p => row[p]);
            Assert.Equal(1.0, head.Sum(r => r.AttnShare), 9);
            for (int kind = 0; kind < 3; kind++)
            {
                var r = head.Single(x => x.Part == Parts[kind]);
                Assert.True(Math.Abs(PartPositions(kind).Sum(p => row[p]) / total - r.AttnShare) <= 1e-4, $"head {head.Key} {r.Part}: {r.AttnShare} vs golden");
            }
        }
        // The top heads' log-increase through each part: the golden position increases summed over the part.
        foreach (var top in g.Json.GetProperty("top_heads").EnumerateArray())
        {
            int l = top[0].GetInt32(), h = top[1].GetInt32();
            var pos = g[$"position_increase_head_{l}_{h}"].to(ScalarType.Float64).data<double>().ToArray();
            double total = imagePositions.Sum(p => pos[p]);
            for (int kind = 0; kind < 3; kind++)
            {
                var r = shares.Single(x => x.Layer == l && x.Head == h && x.Part == Parts[kind]);
                Assert.NotNull(r.LogIncreaseShare);
                Assert.True(Math.Abs(PartPositions(kind).Sum(p => pos[p]) - r.LogIncreaseShare!.Value * total) <= 1e-3, $"head {l}.{h} {r.Part}");
            }
        }
        var json = Explainer.ToJson(m, explained);
        Assert.Equal(m.Layers * m.Heads, json["image_part_shares"]!.AsObject().Count);
    }

    [Fact]
    public void Llava_15_has_no_part_share_rows()
    {
        using var g = new Golden("tiny-llava-mha", "circle");
        var m = ModelCache.Get("tiny-llava-mha");
        using var analyzer = new ExampleAnalyzer(m);
        using var scope = NewDisposeScope();
        var explained = Explainer.Run(analyzer, m.Prepare(g.Prompt, g.ImagePath), new AnalysisSettings(), null);
        Assert.Empty(explained.Rows!.Of<ImagePartShareRow>());
    }
}
