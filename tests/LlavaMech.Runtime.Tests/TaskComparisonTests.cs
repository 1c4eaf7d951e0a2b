using LlavaMech.Model;
using LlavaMech.Processing;
using LlavaMech.Runtime.Studies;
using LlavaMech.Testing;

namespace LlavaMech.Runtime.Tests;

/// <summary>The parts of compare-tasks and findings that reduce per-example maps, on small hand-checked maps.</summary>
public class TaskComparisonTests
{
    [Fact]
    public void Mean_head_map_is_the_cell_wise_mean_of_the_examples()
    {
        double[][] Map(double a, double b, double c, double d) => [[a, b], [c, d]];
        var m = TaskComparison.MeanHeads([Map(1, 2, 3, 4), Map(3, 4, 5, 6), Map(2, 0, 1, 2)]);
        Assert.Equal(2, m.GetLength(0));
        Assert.Equal(2, m.GetLength(1));
        Assert.Equal(2.0, m[0, 0], 12);
        Assert.Equal(2.0, m[0, 1], 12);
        Assert.Equal(3.0, m[1, 0], 12);
        Assert.Equal(4.0, m[1, 1], 12);
        Assert.Equal(new[] { m[0, 0], m[0, 1], m[1, 0], m[1, 1] }, TaskComparison.Flatten(m));   // row-major: layer, then head
    }

    [Fact]
    public void Mean_per_layer_averages_each_layer_over_the_examples()
    {
        Assert.Equal(new double[] { 2, 3, 4 }, TaskComparison.MeanPerLayer([new double[] { 1, 2, 3 }, new double[] { 3, 4, 5 }]));
    }

    [Fact]
    public void Top_heads_are_the_largest_cells_with_ties_broken_by_layer_then_head()
    {
        var m = new double[,] { { 0.1, 0.9, 0.3 }, { 0.5, 0.9, -1 } };
        Assert.True(TaskComparison.TopHeads(m, 2).SetEquals([(0, 1), (1, 1)]));
        Assert.True(TaskComparison.TopHeads(m, 1).SetEquals([(0, 1)]));   // the tie at 0.9 goes to layer 0
        Assert.True(TaskComparison.TopHeads(m, 3).SetEquals([(0, 1), (1, 1), (1, 0)]));
        Assert.Equal(6, TaskComparison.TopHeads(m, 100).Count);
    }

    [Fact]
    public void Target_option_takes_an_id_in_the_vocabulary_or_a_one_token_word_and_refuses_anything_else()
    {
        ITextTokenizer tok = TokenizerLoader.Load(Fixtures.Model("tiny-llava-mha"));
        Assert.Null(TargetResolver.Resolve(null, tok, 602));
        Assert.Equal(17, TargetResolver.Resolve("17", tok, 602));
        Assert.Equal(331, TargetResolver.Resolve("circle", tok, 602));   // "▁circle", as TargetResolver.SingleToken
        var outside = Assert.Throws<InvalidOptionException>(() => TargetResolver.Resolve("602", tok, 602));
        Assert.Contains("outside the vocabulary of 602", outside.Message);
        var words = Assert.Throws<InvalidOptionException>(() => TargetResolver.Resolve("dark blue sky", tok, 602));
        Assert.Contains("is not a single token", words.Message);
    }

    [Fact]
    public void Resident_memory_is_read_from_proc_for_this_process_and_zero_for_no_process()
    {
        long rss = ResourceUsage.StatusBytes(Environment.ProcessId, "VmRSS:");
        Assert.True(rss > 1 << 20, $"VmRSS {rss}");
        Assert.True(ResourceUsage.PeakResidentBytes() >= ResourceUsage.StatusBytes(Environment.ProcessId, "VmRSS:") / 2);
        Assert.Equal(0, ResourceUsage.StatusBytes(int.MaxValue, "VmRSS:"));
        Assert.Equal("1.5 MiB", ResourceUsage.Mib(3 << 19));
    }
}
