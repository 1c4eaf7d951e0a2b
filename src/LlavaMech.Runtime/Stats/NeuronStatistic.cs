using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Stats;

/// <summary>One row of <c>neuron_stats</c>: one FFN neuron's exact log-prob increase and its coefficient at the last position.</summary>
[Table(TableNames.NeuronStats)]
public sealed record NeuronStatRow(string ExampleId, int Layer, int Neuron, double LogProbIncrease, double Coefficient) : ITableRow<NeuronStatRow>
{
    public NeuronStatRow Checked() { RowChecks.NonEmpty(ExampleId, nameof(ExampleId)); return this; }
}

/// <summary>
/// <c>neuron_stats</c>: the example's top <see cref="AnalysisSettings.TopNeurons"/> neurons by exact log-prob increase
/// (docs/METHOD.md, "The statistics"; ties keep (layer, neuron) order), with their MLP coefficient m = silu(gate)·up at the
/// last position (captured by the shared analysis).
/// </summary>
public sealed class NeuronStatistic : Statistic<NeuronStatRow>
{
    public override IEnumerable<NeuronStatRow> Emit(StatisticInput x)
    {
        if (x.Statistics.Neurons is not { } n || x.Settings.TopNeurons <= 0) return [];
        var top = new List<(int Layer, int Neuron, double Score)>();
        for (int l = 0; l < n.Scores.Length; l++)
            for (int i = 0; i < n.Scores[l].Length; i++)
                if (n.IsExact(l, i)) top.Add((l, i, n.Scores[l][i]));
        var chosen = top.OrderByDescending(c => c.Score).Take(x.Settings.TopNeurons).ToList();   // stable: ties keep (layer, neuron) order
        if (chosen.Count == 0) return [];
        var acts = x.Captures.Activations;
        var sel = tensor(chosen.Select(c => (long)c.Layer * acts.MlpWidth + c.Neuron).ToArray(), device: acts.MlpPost.device);
        var coef = acts.MlpPost.reshape(-1).index_select(0, sel).to(ScalarType.Float64).cpu().data<double>().ToArray();
        return chosen.Select((c, j) => new NeuronStatRow(x.ExampleId, c.Layer, c.Neuron, c.Score, coef[j])).ToList();
    }
}
