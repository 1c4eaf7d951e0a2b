using LlavaMech.Hooks;
using LlavaMech.Storage;

namespace LlavaMech.Runtime.Stats;

/// <summary>The statistics every pipeline run computes, and so the tables every shard writes.</summary>
public static class StatisticCatalog
{
    /// <summary>Every statistic, in table order (one line each).</summary>
    public static IReadOnlyList<IStatistic> All { get; } =
    [
        new ExampleSummary(),
        new LayerStatistic(),
        new HeadStatistic(),
        new PositionStatistic(),
        new NeuronStatistic(),
        new VisualTokenLens(),
        new ImagePartShares(),
        new ResidualNorms(),
        new CausalEffects(),
        new KnockoutEffects(),
    ];

    /// <summary>The tables of a shard: every statistic's, then <c>rejects</c>.</summary>
    public static IReadOnlyList<TableDefinition> ShardTables { get; } =
        All.SelectMany(s => s.Tables).Append(TableDefinition.Of<RejectRow>()).ToArray();

    /// <summary>Names of <see cref="ShardTables"/>.</summary>
    public static IReadOnlyList<string> ShardTableNames { get; } = ShardTables.Select(t => t.Name).ToArray();

    /// <summary>Empty batches of every shard table.</summary>
    public static ShardTables NewShard(string runId, string modelFingerprint) => new(runId, modelFingerprint, ShardTables);

    /// <summary>The hooks the statistics read beyond the shared last-position analysis.</summary>
    public static CapturePlan Plan(int layers, bool hasImage)
    {
        var plan = new CapturePlan();
        foreach (var s in All) s.Plan(plan, layers, hasImage);
        return plan;
    }

    /// <summary>Every statistic's rows of one example, in table order.</summary>
    public static ExampleRows Rows(StatisticInput x) => new(All.SelectMany(s => s.Rows(x)).ToArray());
}
