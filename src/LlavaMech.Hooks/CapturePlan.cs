namespace LlavaMech.Hooks;

/// <summary>
/// What a hooked forward pass keeps: hook name -> positions. Hooks not in the plan cost nothing,
/// and a plan without attention patterns lets the model use its fused attention kernel.
/// </summary>
public sealed class CapturePlan
{
    private readonly Dictionary<string, PositionSelector> _hooks = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, PositionSelector> Hooks => _hooks;

    public bool IsEmpty => _hooks.Count == 0;

    public CapturePlan Add(string hook, PositionSelector? positions = null)
    {
        _hooks[hook] = positions ?? PositionSelector.All;
        return this;
    }

    public CapturePlan Add(IEnumerable<string> hooks, PositionSelector? positions = null)
    {
        foreach (var h in hooks) Add(h, positions);
        return this;
    }

    public bool Wants(string hook) => _hooks.ContainsKey(hook);

    public PositionSelector? PositionsOf(string hook) => _hooks.TryGetValue(hook, out var p) ? p : null;

    /// <summary>
    /// Everything the paper's statistics need, at the last position only: residual stream,
    /// attention and MLP outputs, MLP coefficients and the last query row of every pattern, plus
    /// the values at every position (a head's contribution sums over the positions it attends to).
    /// </summary>
    public static CapturePlan ForLastPositionAnalysis(int layers, bool hasVision)
    {
        var plan = new CapturePlan();
        for (int l = 0; l < layers; l++)
        {
            plan.Add(HookNames.ResidPre(l), PositionSelector.Last);
            plan.Add(HookNames.AttnOut(l), PositionSelector.Last);
            plan.Add(HookNames.MlpOut(l), PositionSelector.Last);
            plan.Add(HookNames.MlpPost(l), PositionSelector.Last);
            plan.Add(HookNames.AttnPattern(l), PositionSelector.Last);
            plan.Add(HookNames.AttnV(l), PositionSelector.All);
        }
        plan.Add(HookNames.ResidFinal, PositionSelector.Last);
        if (hasVision) plan.Add(HookNames.ImageFeatures, PositionSelector.All);
        return plan;
    }

    /// <summary>Every hook at every position: what parity tests compare against the reference.</summary>
    public static CapturePlan Everything(int layers, bool hasVision) =>
        new CapturePlan().Add(HookNames.All(layers, hasVision), PositionSelector.All);
}
