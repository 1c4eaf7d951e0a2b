using LlavaMech.Datasets.Manifest;
using LlavaMech.Analysis;
using LlavaMech.Explanation;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Storage;

namespace LlavaMech.Runtime.Stats;

/// <summary>
/// What a statistic sees of one example: the example, its prepared input, the shared readout of docs/METHOD.md
/// (<see cref="ExampleStatistics"/>: target, layer/head/position increases, neurons, image maps, lens) and the pass's
/// captures for its batch row (the hooks of its <see cref="IStatistic.Plan"/> included). Tensors live in the row's
/// dispose scope: copy out what the rows need. <paramref name="Prefix"/>: the example's reused prefix when its pass ran after
/// one (<see cref="AnalysisSettings.PrefixReuse"/>): the position-wise captures then hold the positions after it only, and an
/// extra pass whose edits stay after it may run after it too (<see cref="InterventionRunner.EditedLogProbs"/>).
/// </summary>
public sealed record StatisticInput(
    ManifestExample Work,
    ModelInput Input,
    ExampleStatistics Statistics,
    RowCaptures Captures,
    LoadedModel Model,
    AnalysisSettings Settings,
    ImagePrefix? Prefix = null)
{
    public string ExampleId => Work.Id;
}

/// <summary>
/// A statistic of the pipeline: what it needs from the hooked pass (its capture plan, beyond the shared last-position
/// analysis), and the rows of its table(s) it emits per example. <c>run</c>, <c>submit</c> and the workers run every
/// statistic of <see cref="StatisticCatalog"/> on the same runner as <c>explain</c>
/// (<see cref="ExampleAnalyzer.Run{T}"/>). Add one as one file (a row type with <see cref="TableAttribute"/> and a
/// <see cref="Statistic{TRow}"/>) plus one line in <see cref="StatisticCatalog.All"/>; ARCHITECTURE.md, "Add a statistic".
/// </summary>
public interface IStatistic
{
    /// <summary>The tables it writes (each declared once by its row type).</summary>
    IReadOnlyList<TableDefinition> Tables { get; }

    /// <summary>Adds the hooks it reads to the pass's plan (unused hooks cost nothing; the default needs nothing more).</summary>
    void Plan(CapturePlan plan, int layers, bool hasImage);

    /// <summary>The rows of one example.</summary>
    IEnumerable<object> Rows(StatisticInput x);
}

/// <summary>A statistic with one table, of rows <typeparamref name="TRow"/>.</summary>
public abstract class Statistic<TRow> : IStatistic where TRow : class
{
    public IReadOnlyList<TableDefinition> Tables { get; } = [TableDefinition.Of<TRow>()];

    public virtual void Plan(CapturePlan plan, int layers, bool hasImage) { }

    public abstract IEnumerable<TRow> Emit(StatisticInput x);

    IEnumerable<object> IStatistic.Rows(StatisticInput x) => Emit(x);
}
