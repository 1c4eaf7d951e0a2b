using LlavaMech.Hooks;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Stats;

/// <summary>
/// One row of <c>resid_norms</c>: the L2 norm of the residual stream at the last position entering layer
/// <paramref name="Layer"/> (x_l) and after its attention block (x_l + a_l), in the model's units.
/// </summary>
[Table("resid_norms")]
public sealed record ResidNormRow(string ExampleId, int Layer, double ResidPreNorm, double ResidMidNorm);

/// <summary>
/// <c>resid_norms</c>: how the residual stream at the last position grows through the layers, ||x_l|| and
/// ||x_l + a_l||, the scale the frozen final norm divides by (docs/METHOD.md, "Notation": the frozen-scale projection). It reads
/// <c>blocks.{l}.hook_resid_mid</c> at the last position, which it adds to the pass's plan.
/// </summary>
public sealed class ResidualNorms : Statistic<ResidNormRow>
{
    public override void Plan(CapturePlan plan, int layers, bool hasImage)
    {
        for (int l = 0; l < layers; l++) plan.Add(HookNames.ResidMid(l), PositionSelector.Last);
    }

    public override IEnumerable<ResidNormRow> Emit(StatisticInput x)
    {
        var (cache, row) = (x.Captures.Cache, x.Captures.Row);
        int L = x.Model.Layers;
        var pre = x.Captures.Activations.ResidPre.to(ScalarType.Float64).norm(1).cpu().data<double>().ToArray();                          // [L]
        var mid = stack(Enumerable.Range(0, L).Select(l => cache[HookNames.ResidMid(l)][row][0]).ToArray())
            .to(ScalarType.Float64).norm(1).cpu().data<double>().ToArray();                                                                 // [L]
        return Enumerable.Range(0, L).Select(l => new ResidNormRow(x.ExampleId, l, pre[l], mid[l])).ToList();
    }
}
