using System.Text.Json;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Testing;

namespace LlavaMech.Explanation.Tests;

/// <summary>
/// <c>intervene</c>'s request parser and runner against the 26 reference cases of
/// tests/fixtures/tiny-llava-mha/golden_interventions.json (docs/METHOD.md, "Interventions"): each case's <c>args</c>
/// parsed as the CLI parses them, both log-probabilities within 1e-3 (in practice 1e-4), the edited argmax where the top
/// two edited logits differ by more than 1e-4, and <c>flipped</c>; then the usage errors.
/// </summary>
public class InterventionRunnerTests
{
    private const string Model = "tiny-llava-mha";
    private const double Tolerance = 1e-3;
    private const string CirclePrompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";
    private const string TextPrompt = "The color of the sky is";

    private static JsonElement[] Cases() =>
        JsonDocument.Parse(File.ReadAllText(Fixtures.File(Model, "golden_interventions.json"))).RootElement.EnumerateArray().ToArray();

    public static IEnumerable<object[]> CaseNames() => Cases().Select(c => new object[] { c.GetProperty("name").GetString()! });

    /// <summary>A case's args with file names made paths into the fixture folder (as a user would type them).</summary>
    internal static string[] Args(JsonElement c)
    {
        var args = c.GetProperty("args").EnumerateArray().Select(a => a.GetString()!).ToArray();
        for (int i = 0; i + 1 < args.Length; i++)
            if (args[i] == "--patch-image") args[i + 1] = Fixtures.File(Model, args[i + 1]);
        return args;
    }

    private static InterventionResult Run(string prompt, string? image, params string[] args)
    {
        var m = EndToEndStatisticsTests.Model(Model);
        var input = m.Prepare(prompt, image is null ? null : Fixtures.File(Model, image));
        return InterventionRunner.Run(m, input, InterventionRequest.Parse(args));
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Runner_reproduces_the_reference_intervention(string name)
    {
        var c = Cases().Single(e => e.GetProperty("name").GetString() == name);
        string? image = c.GetProperty("image").ValueKind == JsonValueKind.String ? c.GetProperty("image").GetString() : null;
        var r = Run(c.GetProperty("prompt").GetString()!, image, Args(c));

        Assert.Equal(c.GetProperty("target_id").GetInt32(), r.TargetId); // the clean argmax, as in the reference
        double clean = c.GetProperty("clean_logprob").GetDouble(), edited = c.GetProperty("edit_logprob").GetDouble();
        Assert.True(Math.Abs(r.CleanLogProb - clean) < Tolerance, $"{name}: clean log-prob {r.CleanLogProb:F6} vs golden {clean:F6}");
        Assert.True(Math.Abs(r.EditLogProb - edited) < Tolerance, $"{name}: edited log-prob {r.EditLogProb:F6} vs golden {edited:F6}");
        Assert.Equal(r.EditLogProb - r.CleanLogProb, r.Delta, 12);
        if (c.GetProperty("edit_top2_gap").GetDouble() > 1e-4)
            Assert.Equal(c.GetProperty("edit_argmax").GetInt32(), r.EditArgmax);
        Assert.Equal(c.GetProperty("flipped").GetBoolean(), r.Flipped);
        Assert.Equal(5, r.CleanTop5.Length);
        Assert.Equal(r.CleanArgmax, r.CleanTop5[0].Id);
        Assert.Equal(r.EditArgmax, r.EditTop5[0].Id);
        Assert.Single(r.Edits);
        Assert.Null(r.Curve);
    }

    [Fact]
    public void Edits_are_resolved_on_the_input()
    {
        var r = Run(CirclePrompt, "red_circle.png", "--knockout", "last:image", "--layers", "0-1", "--ablate-heads", "1.2,3.1", "--ablation", "mean");
        var knockout = r.Edits.Single(e => e.Kind == "knockout");
        Assert.Equal([0, 1], knockout.Layers);
        Assert.Equal([r.SeqLen - 1], knockout.QueryPositions!);
        Assert.Equal(36, knockout.KeyPositions!.Length);          // 6 x 6 patches
        Assert.Equal(36, knockout.KnockedPairs);
        var ablation = r.Edits.Single(e => e.Kind == "ablate_heads");
        Assert.Equal("mean", ablation.Mode);
        Assert.Equal([[1, 2], [3, 1]], ablation.Heads);
        Assert.Equal([1, 3], ablation.Layers);
    }

    [Fact]
    public void Patching_every_layer_gives_one_point_per_layer_matching_the_single_layer_runs()
    {
        var all = Run(CirclePrompt, "red_circle.png", "--patch-image", Fixtures.File(Model, "wide_scene.png"), "--patch-layer", "all", "--patch-positions", "image");
        Assert.Equal([0, 1, 2, 3], all.Curve!.Select(p => p.Layer));
        var golden = Cases().Single(c => c.GetProperty("name").GetString() == "circle/patch_image_mid");
        Assert.True(Math.Abs(all.Curve![1].EditLogProb - golden.GetProperty("edit_logprob").GetDouble()) < Tolerance);
        int strongest = all.Curve!.MaxBy(p => Math.Abs(p.Delta))!.Layer;
        Assert.Equal(strongest, all.PatchedLayer);
        Assert.Equal(all.Curve![strongest].EditLogProb, all.EditLogProb);
        Assert.True(all.Edits.Single().EveryLayer);
    }

    [Fact]
    public void Edits_combine_in_forward_order_a_patch_of_every_position_overrides_earlier_layers_edits()
    {
        string[] patch = ["--patch-image", Fixtures.File(Model, "wide_scene.png"), "--patch-layer", "2", "--patch-positions", "all"];
        var alone = Run(CirclePrompt, "red_circle.png", patch);
        // Layers 0-1 edited, then layer 2's whole input replaced by the source's: nothing of the earlier edits remains.
        var before = Run(CirclePrompt, "red_circle.png", [.. patch, "--ablate-heads", "0.1,1.2", "--knockout", "last:image", "--layers", "0-1"]);
        Assert.Equal(alone.EditLogProb, before.EditLogProb);
        Assert.Equal(["patch", "knockout", "ablate_heads"], before.Edits.Select(e => e.Kind));
        // An edit at the patched layer or later acts on the patched stream.
        var after = Run(CirclePrompt, "red_circle.png", [.. patch, "--ablate-heads", "2.1"]);
        Assert.NotEqual(alone.EditLogProb, after.EditLogProb);
    }

    [Fact]
    public void A_named_target_is_measured_instead_of_the_argmax()
    {
        var m = EndToEndStatisticsTests.Model(Model);
        var input = m.Prepare(CirclePrompt, Fixtures.File(Model, "red_circle.png"));
        var r = InterventionRunner.Run(m, input, InterventionRequest.Parse(["--ablate-heads", "1.2"]), targetId: 580);
        Assert.Equal(580, r.TargetId);
        Assert.Equal(r.EditArgmax != 580, r.Flipped);
        Assert.Contains(r.ComparedTokens, t => t.Id == 580);
    }

    private static InvalidOptionException UsageError(Action run) => Assert.Throws<InvalidOptionException>(run);

    [Fact]
    public void A_head_or_layer_out_of_range_names_the_models_size()
    {
        var e = UsageError(() => Run(CirclePrompt, "red_circle.png", "--ablate-heads", "1.4"));
        Assert.Contains("head 4 is out of range", e.Message);
        Assert.Contains("4 heads per layer", e.Message);
        e = UsageError(() => Run(CirclePrompt, "red_circle.png", "--ablate-heads", "4.0"));
        Assert.Contains("layer 4 is out of range; the model has 4 layers", e.Message);
        e = UsageError(() => Run(CirclePrompt, "red_circle.png", "--knockout", "last:image", "--layers", "2-7"));
        Assert.Contains("--layers: layer 4 is out of range", e.Message);
        e = UsageError(() => Run(CirclePrompt, "red_circle.png", "--patch-image", Fixtures.File(Model, "wide_scene.png"), "--patch-layer", "9", "--patch-positions", "last"));
        Assert.Contains("--patch-layer: layer 9", e.Message);
    }

    [Fact]
    public void The_image_group_on_a_text_only_prompt_is_refused()
    {
        var e = UsageError(() => Run(TextPrompt, null, "--knockout", "last:image"));
        Assert.Contains("'image' is empty", e.Message);
        Assert.Contains("no image", e.Message);
        e = UsageError(() => Run(TextPrompt, null, "--patch-prompt", "The color of the leaf is", "--patch-layer", "1", "--patch-positions", "image"));
        Assert.Contains("--patch-positions", e.Message);
    }

    [Fact]
    public void A_knockout_that_removes_nothing_is_refused()
    {
        // Text queries come before the last key (the causal mask hides it already); last:all would leave the row no key.
        foreach (var groups in new[] { "text:last", "last:all" })
        {
            var e = UsageError(() => Run(CirclePrompt, "red_circle.png", "--knockout", groups));
            Assert.Contains($"--knockout {groups} removes no (query, key) score", e.Message);
        }
    }

    [Fact]
    public void A_patch_source_of_another_length_is_refused_with_both_lengths()
    {
        var m = EndToEndStatisticsTests.Model(Model);
        int n = m.Prepare(TextPrompt, null).SeqLen;
        int s = m.Prepare("The color of the grass on the hill is", null).SeqLen;
        var e = UsageError(() => Run(TextPrompt, null, "--patch-prompt", "The color of the grass on the hill is", "--patch-layer", "1", "--patch-positions", "last"));
        Assert.Contains($"the patch source has {s} tokens, the prompt has {n}", e.Message);
    }

    [Theory]
    [InlineData(new[] { "--ablate-heads", "1.x" }, "'1.x' is not LAYER.HEAD")]
    [InlineData(new[] { "--ablate-heads", "1.2", "--ablation", "half" }, "--ablation half: use zero or mean")]
    [InlineData(new[] { "--knockout", "last" }, "is not QUERIES:KEYS")]
    [InlineData(new[] { "--knockout", "last:picture" }, "--knockout: position group 'picture'")]
    [InlineData(new[] { "--knockout", "last:image", "--layers", "3-1" }, "'3-1' is not a layer or a range")]
    [InlineData(new[] { "--layers", "1" }, "--layers selects the layers of --knockout")]
    [InlineData(new[] { "--patch-image", "x.png", "--patch-positions", "last" }, "needs --patch-layer")]
    [InlineData(new[] { "--patch-layer", "1", "--patch-positions", "last" }, "need a source")]
    [InlineData(new[] { "--patch-image", "x.png", "--patch-layer", "1,2", "--patch-positions", "last" }, "not one layer or all")]
    [InlineData(new string[0], "no edit given")]
    public void Malformed_edits_are_usage_errors(string[] args, string message)
    {
        var e = UsageError(() => InterventionRequest.Parse(args));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Parsing_reads_lists_ranges_and_groups()
    {
        var r = InterventionRequest.Parse(["--ablate-heads", "1.2, 3.0,1.2", "--knockout", "text:4,5", "--layers", "0-1,3",
            "--patch-prompt", "p", "--patch-layer", "all", "--patch-positions", "-1"]);
        Assert.Equal([(1, 2), (3, 0)], r.Ablation!.Heads);
        Assert.Equal(HeadAblation.Zero, r.Ablation.Mode);
        Assert.Equal([0, 1, 3], r.Knockout!.Layers);
        Assert.Equal("text", r.Knockout.Queries.Kind);
        Assert.Equal([4, 5], r.Knockout.Keys.Positions!);
        Assert.Null(r.Patch!.Layer);
        Assert.Null(r.Patch.SourceImage);
        Assert.Equal([-1], r.Patch.Positions.Positions!);
    }
}
