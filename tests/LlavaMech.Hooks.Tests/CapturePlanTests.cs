namespace LlavaMech.Hooks.Tests;

public class CapturePlanTests
{
    [Fact]
    public void A_new_plan_is_empty_and_wants_nothing()
    {
        var plan = new CapturePlan();
        Assert.True(plan.IsEmpty);
        Assert.Empty(plan.Hooks);
        Assert.False(plan.Wants(HookNames.ResidPre(0)));
        Assert.Null(plan.PositionsOf(HookNames.ResidPre(0)));
    }

    [Fact]
    public void Add_defaults_to_every_position_and_the_last_add_of_a_hook_wins()
    {
        var plan = new CapturePlan().Add(HookNames.AttnOut(2));
        Assert.False(plan.IsEmpty);
        Assert.Same(PositionSelector.All, plan.PositionsOf(HookNames.AttnOut(2)));

        plan.Add(HookNames.AttnOut(2), PositionSelector.Last);
        Assert.Single(plan.Hooks);
        Assert.Same(PositionSelector.Last, plan.PositionsOf(HookNames.AttnOut(2)));

        var at = PositionSelector.At([3, -1]);
        plan.Add([HookNames.AttnOut(2), HookNames.MlpOut(2)], at);
        Assert.Equal(2, plan.Hooks.Count);
        Assert.Same(at, plan.PositionsOf(HookNames.AttnOut(2)));
        Assert.Same(at, plan.PositionsOf(HookNames.MlpOut(2)));
        // Names are exact (ordinal): another layer or another case is another hook.
        Assert.False(plan.Wants(HookNames.AttnOut(20)));
        Assert.False(plan.Wants(HookNames.AttnOut(2).ToUpperInvariant()));
    }

    [Theory]
    [InlineData(4, true)]
    [InlineData(4, false)]
    [InlineData(32, true)]
    public void The_last_position_analysis_plan_keeps_what_the_statistics_read_and_nothing_else(int layers, bool hasVision)
    {
        var plan = CapturePlan.ForLastPositionAnalysis(layers, hasVision);
        Assert.Equal(6 * layers + 1 + (hasVision ? 1 : 0), plan.Hooks.Count);
        for (int l = 0; l < layers; l++)
        {
            foreach (var h in new[] { HookNames.ResidPre(l), HookNames.AttnOut(l), HookNames.MlpOut(l), HookNames.MlpPost(l), HookNames.AttnPattern(l) })
                Assert.Same(PositionSelector.Last, plan.PositionsOf(h));
            // A head's contribution sums over every position it attends to: values at all positions.
            Assert.Same(PositionSelector.All, plan.PositionsOf(HookNames.AttnV(l)));
            Assert.False(plan.Wants(HookNames.ResidMid(l)));
            Assert.False(plan.Wants(HookNames.ResidPost(l)));
        }
        Assert.Same(PositionSelector.Last, plan.PositionsOf(HookNames.ResidFinal));
        Assert.False(plan.Wants(HookNames.Embed));
        Assert.Equal(hasVision, plan.Wants(HookNames.ImageFeatures));
        if (hasVision) Assert.Same(PositionSelector.All, plan.PositionsOf(HookNames.ImageFeatures));
        Assert.False(plan.Wants(HookNames.ResidPre(layers)));
    }

    [Fact]
    public void Everything_is_every_hook_at_every_position()
    {
        var plan = CapturePlan.Everything(3, hasVision: true);
        var all = HookNames.All(3, hasVision: true);
        Assert.Equal(all.OrderBy(n => n, StringComparer.Ordinal), plan.Hooks.Keys.OrderBy(n => n, StringComparer.Ordinal));
        Assert.All(plan.Hooks.Values, p => Assert.Same(PositionSelector.All, p));
    }
}
