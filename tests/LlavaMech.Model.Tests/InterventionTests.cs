using System.Text.Json;
using LlavaMech.Hooks;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Model.Tests;

/// <summary>
/// Edits on hook points reproduce the reference interventions of tests/fixtures/tiny-llava-mha/golden_interventions.json
/// (docs/METHOD.md, "Interventions"): head ablation (zero, mean) on hook_z, attention knockout on hook_attn_scores,
/// activation patching on hook_resid_pre; log-probabilities of the target at the last position within 1e-4.
/// </summary>
public class InterventionTests
{
    private const string Model = "tiny-llava-mha";
    private const double Tolerance = 1e-4;

    private static JsonElement[] Cases() =>
        JsonDocument.Parse(File.ReadAllText(Fixtures.File(Model, "golden_interventions.json"))).RootElement.EnumerateArray().ToArray();

    public static IEnumerable<object[]> CaseNames() => Cases().Select(c => new object[] { c.GetProperty("name").GetString()! });

    /// <summary>The value after <paramref name="flag"/> in the case's command line, or null.</summary>
    private static string? Arg(string[] args, string flag)
    {
        int i = Array.IndexOf(args, flag);
        return i < 0 ? null : args[i + 1];
    }

    /// <summary>"0-1", "0,3", "1" or null (every layer).</summary>
    private static int[] Layers(string? spec, int layers) => spec is null
        ? Enumerable.Range(0, layers).ToArray()
        : spec.Split(',').SelectMany(part => part.Contains('-')
            ? Enumerable.Range(int.Parse(part.Split('-')[0]), int.Parse(part.Split('-')[1]) - int.Parse(part.Split('-')[0]) + 1)
            : [int.Parse(part)]).ToArray();

    private static double LogProb(Tensor logits, int target) => logits.to(ScalarType.Float64).log_softmax(-1)[target].item<double>();

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Edits_reproduce_the_reference_intervention(string name)
    {
        var c = Cases().Single(e => e.GetProperty("name").GetString() == name);
        var args = c.GetProperty("args").EnumerateArray().Select(a => a.GetString()!).ToArray();
        int target = c.GetProperty("target_id").GetInt32();
        string? image = c.GetProperty("image").ValueKind == JsonValueKind.String ? Fixtures.File(Model, c.GetProperty("image").GetString()!) : null;
        var m = ModelCache.Get(Model);
        using var scope = NewDisposeScope();
        var input = m.Prepare(c.GetProperty("prompt").GetString()!, image);

        double clean = LogProb(m.Forward(input), target);
        Assert.True(Math.Abs(clean - c.GetProperty("clean_logprob").GetDouble()) < Tolerance, $"{name}: clean log-prob {clean:F6} vs golden {c.GetProperty("clean_logprob").GetDouble():F6}");

        var edits = new HookEdits();
        if (Arg(args, "--ablate-heads") is { } heads)
        {
            var list = heads.Split(',').Select(h => (int.Parse(h.Split('.')[0]), int.Parse(h.Split('.')[1])));
            edits.AblateHeads(list, Arg(args, "--ablation") == "mean" ? HeadAblation.Mean : HeadAblation.Zero);
        }
        else if (Arg(args, "--knockout") is { } knockout)
        {
            var groups = knockout.Split(':');
            edits.Knockout(Layers(Arg(args, "--layers"), m.Layers), PositionGroup.Parse(groups[0]), PositionGroup.Parse(groups[1]));
        }
        else if (Arg(args, "--patch-image") is { } source)
        {
            int layer = int.Parse(Arg(args, "--patch-layer")!);
            var sourceInput = m.Prepare(c.GetProperty("prompt").GetString()!, Fixtures.File(Model, source));
            using var sourceCache = new ActivationCache(new CapturePlan().Add(HookNames.ResidPre(layer)));
            m.Forward(sourceInput, sourceCache);
            edits.PatchResidPre(layer, PositionGroup.Parse(Arg(args, "--patch-positions")!), sourceCache[HookNames.ResidPre(layer)].clone());
        }
        else throw new InvalidOperationException($"{name}: no intervention in [{string.Join(" ", args)}]");

        var logits = m.Forward(input, edits);
        double edited = LogProb(logits, target);
        double golden = c.GetProperty("edit_logprob").GetDouble();
        Assert.True(Math.Abs(edited - golden) < Tolerance, $"{name}: edited log-prob {edited:F6} vs golden {golden:F6} (error {Math.Abs(edited - golden):G3})");
        if (c.GetProperty("edit_top2_gap").GetDouble() > 1e-4)
            Assert.Equal(c.GetProperty("edit_argmax").GetInt32(), (int)logits.argmax().item<long>());
        // The edit changed something measurable: every reference case moves the target by more than the tolerance.
        Assert.True(Math.Abs(edited - clean) > 10 * Tolerance, $"{name}: the edit left the log-prob at {edited:F6}");
    }

    [Fact]
    public void Patching_layer_0_at_every_position_gives_the_source_logits_and_a_self_patch_changes_nothing()
    {
        var m = ModelCache.Get(Model);
        using var scope = NewDisposeScope();
        const string prompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";
        var target = m.Prepare(prompt, Fixtures.File(Model, "red_circle.png"));
        var source = m.Prepare(prompt, Fixtures.File(Model, "wide_scene.png"));
        using var sourceCache = new ActivationCache(new CapturePlan().Add(HookNames.ResidPre(0)));
        var sourceLogits = m.Forward(source, sourceCache);
        var patched = m.Forward(target, new HookEdits().PatchResidPre(0, PositionGroup.All, sourceCache[HookNames.ResidPre(0)]));
        Assert.Equal(0.0, Close.MaxAbs(sourceLogits, patched));

        using var selfCache = new ActivationCache(new CapturePlan().Add(HookNames.ResidPre(2)));
        var clean = m.Forward(target, selfCache);
        var self = m.Forward(target, new HookEdits().PatchResidPre(2, PositionGroup.Image, selfCache[HookNames.ResidPre(2)]));
        Assert.Equal(0.0, Close.MaxAbs(clean, self));
    }

    [Fact]
    public void Knockout_masks_only_causal_keys_and_keeps_rows_that_would_lose_every_key()
    {
        // T = 8, image tokens at 2..5: text = {0, 1, 6}, last = {7}.
        var pass = new PassInfo(1, 8, CPU, [ImageTokenLayout.SingleGrid(2, 2, 2, hasCls: false)]);
        static long[] Masked(Tensor mask) => mask[0, 0].nonzero().flatten().data<long>().ToArray(); // (q, k) pairs, flattened
        // text:text: rows 0 and 1 see only text keys and would lose them all, so only row 6 loses its text keys 0, 1, 6.
        Assert.Equal([6L, 0, 6, 1, 6, 6], Masked(Interventions.KnockoutMask(pass, PositionGroup.Text, PositionGroup.Text)));
        // last:image: row 7 loses the image keys.
        Assert.Equal([7L, 2, 7, 3, 7, 4, 7, 5], Masked(Interventions.KnockoutMask(pass, PositionGroup.Last, PositionGroup.Image)));
        // image:image: each image row loses the image keys up to itself (never later ones: the causal mask stays).
        Assert.Equal([2L, 2, 3, 2, 3, 3, 4, 2, 4, 3, 4, 4, 5, 2, 5, 3, 5, 4, 5, 5], Masked(Interventions.KnockoutMask(pass, PositionGroup.Image, PositionGroup.Image)));
    }
    [Fact]
    public void Per_row_edits_change_only_their_row_and_match_the_edit_alone()
    {
        var m = ModelCache.Get(Model);
        using var scope = NewDisposeScope();
        const string prompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";
        var input = m.Prepare(prompt, Fixtures.File(Model, "red_circle.png"));
        (int, int)[] heads = [(1, 2), (2, 1), (3, 1)];
        int[] window = [1, 2];

        var edits = new HookEdits()
            .ForRow(1, e => e.AblateHeads(heads, HeadAblation.Zero))
            .ForRow(2, e => e.Knockout(window, PositionGroup.Last, PositionGroup.Image));
        var batched = m.Forward([input, input, input], edits);
        // The unedited row is bit-exact with a pass that takes the same hooks (identity edits: the same unfused
        // attention path where scores are hooked) ...
        var identity = new HookEdits().Add(edits.Hooks, (x, _) => x);
        var plain = m.Forward([input, input, input], identity);                                    // [3, 1, V]
        Assert.Equal(0.0, Close.MaxAbs(plain[0], batched[0]));
        // ... and within float rounding of the fused pass without hooks.
        Assert.True(Close.MaxAbs(m.Forward([input, input, input])[0], batched[0]) < 1e-5);

        var ablated = m.Forward([input], new HookEdits().AblateHeads(heads, HeadAblation.Zero));
        var knocked = m.Forward([input], new HookEdits().Knockout(window, PositionGroup.Last, PositionGroup.Image));
        Assert.True(Close.MaxAbs(ablated[0], batched[1]) < 1e-5, $"ablated row differs by {Close.MaxAbs(ablated[0], batched[1])}");
        Assert.True(Close.MaxAbs(knocked[0], batched[2]) < 1e-5, $"knocked-out row differs by {Close.MaxAbs(knocked[0], batched[2])}");
        Assert.True(Close.MaxAbs(plain[0], batched[1]) > 1e-3, "the ablation changes its row");
        Assert.True(Close.MaxAbs(plain[0], batched[2]) > 1e-3, "the knockout changes its row");
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Forward([input], new HookEdits().ForRow(1, e => e.AblateHeads(heads, HeadAblation.Zero))));
    }
}
