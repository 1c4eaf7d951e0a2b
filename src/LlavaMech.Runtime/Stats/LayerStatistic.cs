using LlavaMech.Storage;

namespace LlavaMech.Runtime.Stats;

/// <summary>One row of <c>layer_stats</c>: the log-probability increase of the target caused by one layer's attention or FFN block.</summary>
/// <param name="Component"><see cref="Components.Attention"/> or <see cref="Components.Ffn"/>.</param>
[Table(TableNames.LayerStats)]
public sealed record LayerStatRow(string ExampleId, int Layer, string Component, double LogProbIncrease) : ITableRow<LayerStatRow>
{
    public LayerStatRow Checked()
    {
        RowChecks.NonEmpty(ExampleId, nameof(ExampleId));
        return Components.IsValid(Component) ? this
            : throw new ArgumentException($"component must be '{Components.Attention}' or '{Components.Ffn}', not '{Component}'", nameof(Component));
    }
}

/// <summary><c>layer_stats</c>: per layer, the attention block's then the FFN block's increase (docs/METHOD.md, "The statistics").</summary>
public sealed class LayerStatistic : Statistic<LayerStatRow>
{
    public override IEnumerable<LayerStatRow> Emit(StatisticInput x)
    {
        var s = x.Statistics;
        for (int l = 0; l < s.LayerAttnIncrease.Length; l++)
        {
            yield return new LayerStatRow(x.ExampleId, l, Components.Attention, s.LayerAttnIncrease[l]);
            yield return new LayerStatRow(x.ExampleId, l, Components.Ffn, s.LayerFfnIncrease[l]);
        }
    }
}
