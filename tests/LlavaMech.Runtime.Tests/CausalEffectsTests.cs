using LlavaMech.Explanation;
using LlavaMech.Hooks;
using LlavaMech.Model.Tests;
using LlavaMech.Runtime.Stats;
using LlavaMech.Storage;

namespace LlavaMech.Runtime.Tests;

/// <summary>
/// <c>causal_effects</c> and <c>knockout_effects</c> (run --causal K, --knockout-window W): each row's edited log-prob
/// equals what <c>intervene</c>'s <see cref="InterventionRunner"/> gives for the same heads / window alone (1e-5), the
/// selections are what their definitions say, and the options cost nothing when off.
/// </summary>
public class CausalEffectsTests
{
    private const double Tol = 1e-5;

    private static ExampleRows Rows(Golden g, AnalysisSettings settings)
    {
        using var analyzer = new PipelineAnalyzer(ModelCache.Get(g.Model));
        var outcome = analyzer.Run(PipelineAnalyzerTests.Work(g), settings);
        Assert.False(outcome.Rejected, outcome.RejectReason);
        return outcome.Rows!;
    }

    [Theory]
    [InlineData("tiny-llava-mha", "circle", 3)]
    [InlineData("tiny-llava-mha", "square_wide", 2)]
    [InlineData("tiny-llava-mha", "llava_text_sky", 3)]
    public void Each_selection_equals_intervene_on_the_same_heads(string modelName, string caseId, int k)
    {
        using var g = new Golden(modelName, caseId);
        var rows = Rows(g, new AnalysisSettings { Causal = k });
        var example = rows.Example;
        var effects = rows.Of<CausalEffectRow>();
        bool image = g.ImagePath is not null;
        Assert.Equal(image ? CausalEffects.Selections : [CausalEffects.LogIncrease, CausalEffects.Random], effects.Select(r => r.Selection));

        var model = ModelCache.Get(modelName);
        var input = model.Prepare(g.Prompt, g.ImagePath);
        foreach (var r in effects)
        {
            Assert.Equal((g.Case, g.ImagePath is null ? "tqa" : "vqa", k), (r.ExampleId, r.Task, r.K));
            var heads = InterventionRequest.ParseHeads(r.Heads);
            Assert.Equal(k, heads.Count);
            var alone = InterventionRunner.Run(model, input, new InterventionRequest(new HeadAblationEdit(heads, HeadAblation.Zero), null, null), example.TargetId);
            Assert.True(Math.Abs(alone.EditLogProb - r.EditLogprob) < Tol, $"{r.Selection}: edit {r.EditLogprob:F7} vs intervene {alone.EditLogProb:F7}");
            Assert.True(Math.Abs(alone.CleanLogProb - r.CleanLogprob) < 1e-4, $"{r.Selection}: clean {r.CleanLogprob:F7} vs intervene {alone.CleanLogProb:F7}");
            Assert.Equal(Math.Log(example.TargetProb), r.CleanLogprob, 1e-12);
            Assert.Equal(r.EditLogprob - r.CleanLogprob, r.Delta, 1e-12);
            Assert.Equal(alone.Flipped, r.Flipped);
        }
        // The selections differ from each other here, so the table really compares three edits.
        Assert.Equal(effects.Count, effects.Select(r => r.Heads).Distinct().Count());
    }

    [Fact]
    public void Log_increase_and_attention_are_the_top_k_of_head_stats()
    {
        using var g = new Golden("tiny-llava-mha", "circle");
        var rows = Rows(g, new AnalysisSettings { Causal = 4 });
        var heads = rows.Of<HeadStatRow>();
        string Top(Func<HeadStatRow, double> score) => string.Join(",",
            heads.OrderByDescending(score).ThenBy(h => h.Layer).ThenBy(h => h.Head).Take(4).Select(h => $"{h.Layer}.{h.Head}"));
        var effects = rows.Of<CausalEffectRow>().ToDictionary(r => r.Selection);
        Assert.Equal(Top(h => h.LogProbIncrease), effects[CausalEffects.LogIncrease].Heads);
        Assert.Equal(Top(h => h.AttnToImage!.Value), effects[CausalEffects.Attention].Heads);
        Assert.Equal(CausalEffects.Format(CausalEffects.RandomHeads("circle", 4, 4, 4)), effects[CausalEffects.Random].Heads);
    }

    [Fact]
    public void The_random_selection_is_reproducible_and_depends_on_the_id()
    {
        var a = CausalEffects.RandomHeads("vqa-000017", 32, 32, 5);
        Assert.Equal(a, CausalEffects.RandomHeads("vqa-000017", 32, 32, 5));
        Assert.Equal(5, a.Distinct().Count());
        Assert.All(a, h => Assert.True(h.Layer is >= 0 and < 32 && h.Head is >= 0 and < 32));
        var ids = Enumerable.Range(0, 20).Select(i => $"vqa-{i:000000}").ToArray();
        Assert.Equal(ids.Length, ids.Select(id => CausalEffects.Format(CausalEffects.RandomHeads(id, 32, 32, 5))).Distinct().Count());
        // Pinned: the seed is SHA-256 of the id (stable across processes and machines), not string.GetHashCode.
        Assert.Equal(CausalEffects.Seed("circle"), System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(
            System.Security.Cryptography.SHA256.HashData("circle"u8.ToArray()).AsSpan(0, 8)));
        // Every head can be drawn: k = all heads is a permutation.
        Assert.Equal(16, CausalEffects.RandomHeads("x", 4, 4, 16).Distinct().Count());
    }

    [Fact]
    public void Off_by_default_and_K_is_checked_against_the_model()
    {
        using var g = new Golden("tiny-llava-mha", "circle");
        var rows = Rows(g, new AnalysisSettings());
        Assert.Empty(rows.Of<CausalEffectRow>());
        Assert.Empty(rows.Of<KnockoutEffectRow>());
        Assert.Equal(0, new AnalysisSettings().Causal);
        Assert.Equal(0, new AnalysisSettings().KnockoutWindow);
        new AnalysisSettings { Causal = 16, KnockoutWindow = 4 }.CheckModel(4, 4);
        var e = Assert.Throws<ArgumentException>(() => new AnalysisSettings { Causal = 17 }.CheckModel(4, 4));
        Assert.Contains("--causal 17", e.Message);
        Assert.Contains("16 heads", e.Message);
        Assert.Contains("--knockout-window 5", Assert.Throws<ArgumentException>(() => new AnalysisSettings { KnockoutWindow = 5 }.CheckModel(4, 4)).Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void Knockout_rows_equal_intervene_on_the_same_window(int window)
    {
        using var g = new Golden("tiny-llava-mha", "circle");
        var rows = Rows(g, new AnalysisSettings { KnockoutWindow = window, BatchSize = 2 });   // batch 2: windows split over passes
        var model = ModelCache.Get("tiny-llava-mha");
        var input = model.Prepare(g.Prompt, g.ImagePath);
        var effects = rows.Of<KnockoutEffectRow>();
        Assert.Equal(Enumerable.Range(0, 4 - window + 1), effects.Select(r => r.StartLayer));
        foreach (var r in effects)
        {
            Assert.Equal((r.StartLayer + window - 1, window, "vqa"), (r.EndLayer, r.WindowSize, r.Task));
            var layers = Enumerable.Range(r.StartLayer, window).ToArray();
            var alone = InterventionRunner.Run(model, input, new InterventionRequest(null, new KnockoutEdit(PositionGroup.Last, PositionGroup.Image, layers), null), rows.Example.TargetId);
            Assert.True(Math.Abs(alone.EditLogProb - r.EditLogprob) < Tol, $"window {r.StartLayer}-{r.EndLayer}: {r.EditLogprob:F7} vs intervene {alone.EditLogProb:F7}");
            Assert.Equal(r.EditLogprob - r.CleanLogprob, r.Delta, 1e-12);
            Assert.Equal(alone.Flipped, r.Flipped);
        }
        Assert.Contains(effects, r => Math.Abs(r.Delta) > 1e-4);
    }

    [Fact]
    public void Text_only_examples_have_no_knockout_rows()
    {
        using var g = new Golden("tiny-llava-mha", "llava_text_sky");
        Assert.Empty(Rows(g, new AnalysisSettings { KnockoutWindow = 1 }).Of<KnockoutEffectRow>());
    }

    [Fact]
    public void Their_tables_are_declared_by_their_row_types_and_every_shard_writes_them()
    {
        Assert.Equal(["run_id", "model_fingerprint", "example_id", "task", "selection", "k", "heads", "clean_logprob", "edit_logprob", "delta", "flipped"],
            TableDefinition.Of<CausalEffectRow>().Schema.DataFields.Select(f => f.Name));
        Assert.Equal(["run_id", "model_fingerprint", "example_id", "task", "start_layer", "end_layer", "window_size", "clean_logprob", "edit_logprob", "delta", "flipped"],
            TableDefinition.Of<KnockoutEffectRow>().Schema.DataFields.Select(f => f.Name));
        Assert.Contains("causal_effects", StatisticCatalog.ShardTableNames);
        Assert.Contains("knockout_effects", StatisticCatalog.ShardTableNames);
    }
}
