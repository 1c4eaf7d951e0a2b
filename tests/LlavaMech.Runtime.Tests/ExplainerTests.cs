using System.Text.Json.Nodes;
using LlavaMech.Explanation;
using LlavaMech.Model.Tests;
using LlavaMech.Runtime.Stats;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Tests;

/// <summary>
/// <c>explain</c> and the pipeline run the same code: the rows <see cref="Explainer.Run"/> makes of one example are the
/// rows a worker writes for it (every table of the catalog, value for value), and explain.json's table fields are those rows.
/// </summary>
public class ExplainerTests
{
    [Theory]
    [InlineData("circle")]
    [InlineData("square_wide")]
    public void Explain_rows_are_the_pipelines_rows_and_explain_json_projects_them(string caseId)
    {
        using var g = new Golden("tiny-llava-mha", caseId);
        var model = ModelCache.Get("tiny-llava-mha");
        var settings = new AnalysisSettings { TopHeads = 4 };

        using var pipeline = new PipelineAnalyzer(model);
        var work = PipelineAnalyzerTests.Work(g) with { Id = Explainer.ExampleId, MetadataJson = "{}", ImageRelative = Path.GetFileName(g.ImagePath), Line = 0 };
        var outcome = pipeline.Run(work, settings);
        Assert.False(outcome.Rejected, outcome.RejectReason);

        using var analyzer = new ExampleAnalyzer(model);
        using var scope = NewDisposeScope();
        var explained = Explainer.Run(analyzer, model.Prepare(g.Prompt, g.ImagePath), settings, null);
        var rows = explained.Rows!;

        // Every table, row for row (records compare by value).
        foreach (var table in StatisticCatalog.All)
            Assert.True(outcome.Rows!.All.Where(r => table.Tables.Any(t => t.RowType == r.GetType())).SequenceEqual(
                rows.All.Where(r => table.Tables.Any(t => t.RowType == r.GetType()))), $"{table.GetType().Name}: explain's rows differ from the pipeline's");

        var json = Explainer.ToJson(model, explained);
        var example = rows.Example;
        Assert.Equal(example.TargetId, (int)json["target_id"]!);
        Assert.Equal(example.TargetProb, (double)json["target_prob"]!);
        var heads = rows.Of<HeadStatRow>();
        var grid = json["head_increase"]!.AsArray();
        Assert.Equal(heads.Count, grid.Sum(r => r!.AsArray().Count));
        Assert.All(heads, h => Assert.Equal(h.LogProbIncrease, (double)grid[h.Layer]![h.Head]!));
        var top = json["top_heads"]!.AsArray();
        Assert.Equal(settings.TopHeads, top.Count);
        var positions = rows.Of<PositionStatRow>();
        Assert.Equal(positions.Select(p => (p.Layer, p.Head)).Distinct(), top.Select(t => ((int)t![0]!, (int)t[1]!)));
        Assert.All(positions, p => Assert.Equal(p.LogProbIncrease, (double)json["position_increase"]![$"{p.Layer}_{p.Head}"]![p.Position]!));
        var attn = rows.Of<LayerStatRow>().Where(r => r.Component == Components.Attention).ToList();
        Assert.Equal(attn.Select(r => r.LogProbIncrease), json["layer_attn_increase"]!.AsArray().Select(v => (double)v!));
        var neurons = rows.Of<NeuronStatRow>();
        Assert.Equal(settings.TopNeurons, neurons.Count);
        Assert.Equal(neurons.Select(n => n.LogProbIncrease), json["top_neurons"]!.AsArray().Select(n => (double)n![2]!));
        var lens = rows.Of<LogitLensRow>().Where(r => r.Rank == 0).Select(r => r.TokenId);
        Assert.Equal(lens, json["logit_lens_image_top5"]!.AsArray().Select(r => (int)r![0]!));
    }
}
