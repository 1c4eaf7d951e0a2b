using LlavaMech.Storage;

namespace LlavaMech.Runtime.Stats;

/// <summary>One row of <c>head_stats</c>: one head's increase and, for image examples, its attention mass on the image tokens.</summary>
[Table(TableNames.HeadStats)]
public sealed record HeadStatRow(string ExampleId, int Layer, int Head, double LogProbIncrease, double? AttnToImage = null) : ITableRow<HeadStatRow>
{
    public HeadStatRow Checked() { RowChecks.NonEmpty(ExampleId, nameof(ExampleId)); return this; }
}

/// <summary><c>head_stats</c>: every head's log-prob increase (docs/METHOD.md, "The statistics") and its attention share on the image.</summary>
public sealed class HeadStatistic : Statistic<HeadStatRow>
{
    public override IEnumerable<HeadStatRow> Emit(StatisticInput x)
    {
        var s = x.Statistics;
        var share = s.Image?.ImageAttentionShare;
        bool hasShare = share is { Length: > 0 };
        for (int l = 0; l < s.HeadIncrease.Length; l++)
            for (int h = 0; h < s.HeadIncrease[l].Length; h++)
                yield return new HeadStatRow(x.ExampleId, l, h, s.HeadIncrease[l][h], hasShare ? share![l][h] : null);
    }
}
