using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using LlavaMech.Explanation;
using LlavaMech.Hooks;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Stats;

/// <summary>
/// One row of <c>causal_effects</c>: the example's target token after zero-ablating the <paramref name="K"/> heads
/// <paramref name="Heads"/> ("L.H,L.H,..", best first; a random selection in draw order) chosen by
/// <paramref name="Selection"/> (<see cref="CausalEffects.LogIncrease"/>, <see cref="CausalEffects.Attention"/>,
/// <see cref="CausalEffects.Random"/>): clean log p(y) (= ln target_prob of its <c>examples</c> row), the edited log
/// p(y), delta = edited - clean, and whether the edited argmax is no longer y (docs/METHOD.md, "Interventions").
/// </summary>
[Table(TableNames.CausalEffects)]
public sealed record CausalEffectRow(string ExampleId, string Task, string Selection, int K, string Heads,
    double CleanLogprob, double EditLogprob, double Delta, bool Flipped) : ITableRow<CausalEffectRow>
{
    public CausalEffectRow Checked()
    {
        RowChecks.NonEmpty(ExampleId, nameof(ExampleId));
        RowChecks.NonEmpty(Selection, nameof(Selection));
        return this;
    }
}

/// <summary>
/// <c>causal_effects</c> (<c>run --causal K</c>, <see cref="AnalysisSettings.Causal"/>): per example three zero-ablations
/// of K heads each at <c>hook_z</c>, run by the statistic itself as ONE extra forward of batch 3 (the input repeated,
/// each row its own ablation: <see cref="InterventionRunner.EditedLogProbs"/>):
/// <list type="bullet">
/// <item><c>log_increase</c>: the K heads with the largest head log-prob increase (<c>head_stats.log_prob_increase</c>);</item>
/// <item><c>attention</c>: the K heads with the largest attention share on the image (<c>head_stats.attn_to_image</c>);
/// a text-only example has no such share and gets no <c>attention</c> row;</item>
/// <item><c>random</c>: K distinct heads drawn by SplitMix64 seeded with the first 8 bytes (little-endian) of
/// SHA-256(UTF-8 example id): the same id always draws the same heads, on any machine (<see cref="RandomHeads"/>).</item>
/// </list>
/// Ties rank by (layer, head) ascending. K = 0: no rows and no pass. Captures nothing beyond the shared analysis. A head
/// ablated at every position changes the prefix's own computation, so this pass is a full one even after a reused prefix.
/// </summary>
public sealed class CausalEffects : Statistic<CausalEffectRow>
{
    public const string LogIncrease = HeadSelections.LogIncrease;
    public const string Attention = HeadSelections.Attention;
    public const string Random = HeadSelections.Random;

    /// <summary>The selections in table order.</summary>
    public static IReadOnlyList<string> Selections => HeadSelections.All;

    public override IEnumerable<CausalEffectRow> Emit(StatisticInput x)
    {
        int k = x.Settings.Causal;
        if (k == 0) return [];
        var (s, model) = (x.Statistics, x.Model);
        x.Settings.CheckModel(model.Layers, model.Heads);
        var selections = new List<(string Name, (int Layer, int Head)[] Heads)> { (LogIncrease, TopK(s.HeadIncrease, k)) };
        if (s.Image?.ImageAttentionShare is { Length: > 0 } share) selections.Add((Attention, TopK(share, k)));
        selections.Add((Random, RandomHeads(x.ExampleId, model.Layers, model.Heads, k)));

        using var scope = NewDisposeScope();
        var logProbs = InterventionRunner.EditedLogProbs(model, x.Input,
            selections.Select(sel => (Action<HookEdits>)(e => e.AblateHeads(sel.Heads, HeadAblation.Zero))).ToArray());   // [n, V]
        var rows = new List<CausalEffectRow>(selections.Count);
        for (int i = 0; i < selections.Count; i++)
        {
            var m = InterventionRunner.Measure(logProbs[i], s.TargetId, s.TargetLogProb);
            rows.Add(new CausalEffectRow(x.ExampleId, x.Work.Task, selections[i].Name, k, Format(selections[i].Heads),
                s.TargetLogProb, m.EditLogProb, m.Delta, m.Flipped));
        }
        return rows;
    }

    /// <summary>The <paramref name="k"/> heads with the largest <paramref name="score"/>[layer][head], best first (ties: lower layer, then head).</summary>
    public static (int Layer, int Head)[] TopK(double[][] score, int k) =>
        score.SelectMany((row, l) => row.Select((v, h) => (Layer: l, Head: h, Value: v)))
            .OrderByDescending(t => t.Value).ThenBy(t => t.Layer).ThenBy(t => t.Head)
            .Take(k).Select(t => (t.Layer, t.Head)).ToArray();

    /// <summary>
    /// <paramref name="k"/> distinct heads of <paramref name="layers"/> x <paramref name="heads"/>, in draw order: a partial
    /// Fisher-Yates shuffle of the head indices (layer * heads + head) driven by SplitMix64 from
    /// <see cref="Seed"/>(<paramref name="exampleId"/>). Reproducible across runs, processes and machines.
    /// </summary>
    public static (int Layer, int Head)[] RandomHeads(string exampleId, int layers, int heads, int k)
    {
        int n = layers * heads;
        if (k > n) throw new ArgumentOutOfRangeException(nameof(k), $"{k} heads of {n}");
        var idx = Enumerable.Range(0, n).ToArray();
        ulong state = Seed(exampleId);
        for (int i = 0; i < k; i++)
        {
            int j = i + (int)(SplitMix64(ref state) % (ulong)(n - i));
            (idx[i], idx[j]) = (idx[j], idx[i]);
        }
        return idx.Take(k).Select(v => (v / heads, v % heads)).ToArray();
    }

    /// <summary>The first 8 bytes of SHA-256 of the UTF-8 id, little-endian (never <c>string.GetHashCode</c>, which is per process).</summary>
    public static ulong Seed(string exampleId) =>
        BinaryPrimitives.ReadUInt64LittleEndian(SHA256.HashData(Encoding.UTF8.GetBytes(exampleId)).AsSpan(0, 8));

    /// <summary>"L.H,L.H,.." in the given order.</summary>
    public static string Format(IEnumerable<(int Layer, int Head)> heads) => string.Join(",", heads.Select(h => $"{h.Layer}.{h.Head}"));

    private static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
