using LlavaMech.Explanation;
using LlavaMech.Hooks;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Stats;

/// <summary>
/// One row of <c>knockout_effects</c>: the example's target after knocking out attention from the last position to the
/// image tokens (<c>last:image</c>) in the layers <paramref name="StartLayer"/>..<paramref name="EndLayer"/> (inclusive,
/// <paramref name="WindowSize"/> layers): clean and edited log p(y), delta = edited - clean, and whether the argmax flipped.
/// </summary>
[Table(TableNames.KnockoutEffects)]
public sealed record KnockoutEffectRow(string ExampleId, string Task, int StartLayer, int EndLayer, int WindowSize,
    double CleanLogprob, double EditLogprob, double Delta, bool Flipped) : ITableRow<KnockoutEffectRow>
{
    public KnockoutEffectRow Checked() { RowChecks.NonEmpty(ExampleId, nameof(ExampleId)); return this; }
}

/// <summary>
/// <c>knockout_effects</c> (<c>run --knockout-window W</c>, <see cref="AnalysisSettings.KnockoutWindow"/>): per image
/// example, the attention knockout <c>last:image</c> of docs/METHOD.md ("Interventions") in each window of W consecutive
/// layers, start = 0 .. L - W: L - W + 1 edited passes, run by the statistic as forwards of up to
/// <see cref="AnalysisSettings.BatchSize"/> rows (the input repeated, each row its own window). Text-only examples and
/// W = 0 give no rows and no pass. Captures nothing beyond the shared analysis. The knockout edits only the last query row, so
/// after a reused prefix its passes run after the prefix too.
/// </summary>
public sealed class KnockoutEffects : Statistic<KnockoutEffectRow>
{
    public override IEnumerable<KnockoutEffectRow> Emit(StatisticInput x)
    {
        int w = x.Settings.KnockoutWindow;
        if (w == 0 || x.Input.ImagePositions.Length == 0) return [];
        var (s, model) = (x.Statistics, x.Model);
        x.Settings.CheckModel(model.Layers, model.Heads);
        var starts = Enumerable.Range(0, model.Layers - w + 1).ToArray();
        var rows = new List<KnockoutEffectRow>(starts.Length);
        foreach (var chunk in starts.Chunk(Math.Max(1, x.Settings.BatchSize)))
        {
            using var scope = NewDisposeScope();
            var logProbs = InterventionRunner.EditedLogProbs(model, x.Input, chunk.Select(start =>
                (Action<HookEdits>)(e => e.Knockout(Enumerable.Range(start, w), PositionGroup.Last, PositionGroup.Image))).ToArray(), x.Prefix);
            for (int i = 0; i < chunk.Length; i++)
            {
                var m = InterventionRunner.Measure(logProbs[i], s.TargetId, s.TargetLogProb);
                rows.Add(new KnockoutEffectRow(x.ExampleId, x.Work.Task, chunk[i], chunk[i] + w - 1, w, s.TargetLogProb, m.EditLogProb, m.Delta, m.Flipped));
            }
        }
        return rows;
    }
}
