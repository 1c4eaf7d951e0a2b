using LlavaMech.Model.Tests;
using LlavaMech.Runtime.Stats;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Tests;

/// <summary>
/// <c>resid_norms</c>, the statistic added as one file plus one catalog line: its rows against the reference's residual
/// stream (golden <c>layer_inputs</c> x_l and <c>attn_outputs</c> a_l at the last position), and its table in every shard.
/// </summary>
public class ResidualNormsTests
{
    [Theory]
    [InlineData("tiny-llava-mha", "circle")]
    [InlineData("tiny-llava-mha", "llava_text_sky")]
    [InlineData("tiny-vicuna", "vicuna_banana")]
    public void Norms_equal_the_reference_residual_stream(string model, string caseId)
    {
        using var g = new Golden(model, caseId);
        using var analyzer = new PipelineAnalyzer(ModelCache.Get(model));
        var outcome = analyzer.Run(PipelineAnalyzerTests.Work(g), new AnalysisSettings());
        Assert.False(outcome.Rejected, outcome.RejectReason);
        var rows = outcome.Rows!.Of<ResidNormRow>();

        using var scope = NewDisposeScope();
        var x = g["layer_inputs"].to(ScalarType.Float64).select(1, -1);        // [L, D] x_l at the last position
        var a = g["attn_outputs"].to(ScalarType.Float64).select(1, -1);        // [L, D] a_l
        var pre = x.norm(1).data<double>().ToArray();
        var mid = (x + a).norm(1).data<double>().ToArray();
        Assert.Equal(Enumerable.Range(0, pre.Length), rows.Select(r => r.Layer));
        Assert.All(rows, r => Assert.Equal(g.Case, r.ExampleId));
        for (int l = 0; l < pre.Length; l++)
        {
            Assert.Equal(pre[l], rows[l].ResidPreNorm, 1e-4 * Math.Max(1, pre[l]));
            Assert.Equal(mid[l], rows[l].ResidMidNorm, 1e-4 * Math.Max(1, mid[l]));
        }
        Assert.True(rows[^1].ResidPreNorm > rows[0].ResidPreNorm, "the residual stream grows through the layers");
    }

    [Fact]
    public void Its_table_is_declared_by_its_row_type_and_every_shard_writes_it()
    {
        var table = TableDefinition.Of<ResidNormRow>();
        Assert.Equal("resid_norms", table.Name);
        Assert.Equal(["run_id", "model_fingerprint", "example_id", "layer", "resid_pre_norm", "resid_mid_norm"], table.Schema.DataFields.Select(f => f.Name));
        Assert.Contains("resid_norms", StatisticCatalog.ShardTableNames);
        Assert.Equal("rejects", StatisticCatalog.ShardTableNames[^1]);
        var plan = StatisticCatalog.Plan(layers: 4, hasImage: true);
        Assert.Equal(Enumerable.Range(0, 4).Select(Hooks.HookNames.ResidMid), plan.Hooks.Keys.Where(k => k.EndsWith("hook_resid_mid")));
    }
}
