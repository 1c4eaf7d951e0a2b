using static TorchSharp.torch;

namespace LlavaMech.Explanation;

/// <summary>A faithfulness curve: target probability as patches are removed (deletion) or restored (insertion) in a method's order.</summary>
/// <param name="Fractions">[S+1] fraction of patches removed/inserted, 0..1.</param>
/// <param name="Probabilities">[S+1] p(target) at each fraction.</param>
public sealed record FaithfulnessCurve(double[] Fractions, double[] Probabilities)
{
    /// <summary>Area under the curve on [0, 1] (trapezoids).</summary>
    public double Auc
    {
        get
        {
            double a = 0;
            for (int i = 1; i < Fractions.Length; i++) a += (Fractions[i] - Fractions[i - 1]) * (Probabilities[i] + Probabilities[i - 1]) / 2;
            return a;
        }
    }
}

/// <summary>
/// Deletion and insertion curves (Petsiuk et al., RISE): a faithful importance order makes the
/// target probability fall fast when its top patches are removed (low deletion AUC) and rise fast
/// when they are restored to an all-removed image (high insertion AUC). "Removed" = the example's
/// mean image-token embedding, the same ablation as occlusion.
/// </summary>
public static class Faithfulness
{
    public static (FaithfulnessCurve Deletion, FaithfulnessCurve Insertion) Curves(ImageTokenAttribution ctx, float[] scores, int steps = 16)
    {
        int p = ctx.Patches;
        if (scores.Length != p) throw new ArgumentException($"{scores.Length} scores for {p} patches");
        // Most important first; ties keep patch order so the curve is deterministic.
        var order = Enumerable.Range(0, p).OrderByDescending(i => scores[i]).ThenBy(i => i).ToArray();
        var counts = Enumerable.Range(0, steps + 1).Select(s => (int)Math.Round((double)s * p / steps)).ToArray();
        var deletion = new bool[(steps + 1) * p];
        var insertion = new bool[(steps + 1) * p];
        for (int s = 0; s <= steps; s++)
        {
            for (int i = 0; i < p; i++) insertion[s * p + i] = true;     // start from all removed
            for (int k = 0; k < counts[s]; k++)
            {
                deletion[s * p + order[k]] = true;
                insertion[s * p + order[k]] = false;
            }
        }
        using var scope = NewDisposeScope();
        var dev = ctx.Device;
        double[] Probs(bool[] mask) => ctx.TargetLogProbs(ctx.WithPatchesRemoved(tensor(mask, [steps + 1, p], device: dev))).Select(Math.Exp).ToArray();
        var fractions = counts.Select(c => (double)c / p).ToArray();
        return (new FaithfulnessCurve(fractions, Probs(deletion)), new FaithfulnessCurve(fractions, Probs(insertion)));
    }
}
