using System.Globalization;
using System.Text.Json.Serialization;
using LlavaMech.Hooks;
using LlavaMech.Model;

namespace LlavaMech.Explanation;

/// <summary>One edit option of <c>intervene</c>: its name (without "--"), value name and help; the CLI declares these.</summary>
public sealed record InterventionOption(string Name, string ValueName, string Help);

/// <summary>Head ablation: the listed (layer, head) outputs at <c>hook_z</c>, set to zero or to their mean over positions.</summary>
public sealed record HeadAblationEdit(IReadOnlyList<(int Layer, int Head)> Heads, HeadAblation Mode);

/// <summary>Attention knockout from the <paramref name="Queries"/> to the <paramref name="Keys"/> in <paramref name="Layers"/> (null: every layer).</summary>
public sealed record KnockoutEdit(PositionGroup Queries, PositionGroup Keys, IReadOnlyList<int>? Layers);

/// <summary>
/// Activation patching from a source input: <paramref name="SourcePrompt"/> (null: the prompt) with
/// <paramref name="SourceImage"/> (null: the image), at <c>hook_resid_pre</c> of <paramref name="Layer"/> (null: every
/// layer in turn, one pass each) and <paramref name="Positions"/>.
/// </summary>
public sealed record PatchEdit(string? SourceImage, string? SourcePrompt, int? Layer, PositionGroup Positions);

/// <summary>
/// The edits of one <c>intervene</c> run, as the user wrote them (docs/METHOD.md, "Interventions"); any combination of
/// the three applies in one edited pass. Parsed here so the CLI and the tests read the same syntax; checked against the
/// model and the input by <see cref="InterventionRunner"/>. Every mistake is an <see cref="InvalidOptionException"/>
/// (a usage error: exit code 2 in the CLI) naming the option.
/// </summary>
public sealed record InterventionRequest(HeadAblationEdit? Ablation, KnockoutEdit? Knockout, PatchEdit? Patch)
{
    /// <summary>The edit options, in the order --help lists them.</summary>
    public static IReadOnlyList<InterventionOption> Options { get; } =
    [
        new("ablate-heads", "L.H,..", "ablate these heads (layer.head, e.g. 1.2,3.0) at blocks.{l}.attn.hook_z"),
        new("ablation", "MODE", "how --ablate-heads replaces a head's output: zero, or mean (its mean over the positions) (default: zero)"),
        new("knockout", "Q:K", "attention knockout: queries Q may not attend to keys K; Q, K = last, image, text, all or positions i,j,..."),
        new("layers", "A-B|L,..", "layers of --knockout, e.g. 0-1 or 0,3 (default: every layer)"),
        new("patch-image", "FILE", "activation patching: the source input has this image (same number of tokens as the prompt)"),
        new("patch-prompt", "TEXT", "activation patching: the source input has this prompt (default: --prompt)"),
        new("patch-layer", "L|all", "patch the residual stream at the input of layer L (blocks.{L}.hook_resid_pre), or each layer in turn"),
        new("patch-positions", "P", "positions patched: last, image, text, all or i,j,... (negative counts from the end)"),
    ];

    /// <summary>Whether there is anything to do.</summary>
    public bool IsEmpty => Ablation is null && Knockout is null && Patch is null;

    /// <summary>Reads the edit options from <paramref name="option"/> (name without "--" to its value, or null when not given).</summary>
    /// <exception cref="InvalidOptionException">a malformed value, an option without the one it qualifies, or no edit at all.</exception>
    public static InterventionRequest Parse(Func<string, string?> option)
    {
        HeadAblationEdit? ablation = null;
        if (option("ablate-heads") is { } heads)
        {
            var mode = option("ablation") switch
            {
                null or "zero" => HeadAblation.Zero,
                "mean" => HeadAblation.Mean,
                var m => throw new InvalidOptionException($"--ablation {m}: use zero or mean"),
            };
            ablation = new HeadAblationEdit(ParseHeads(heads), mode);
        }
        else if (option("ablation") is { } stray)
            throw new InvalidOptionException($"--ablation {stray} needs --ablate-heads");

        KnockoutEdit? knockout = null;
        if (option("knockout") is { } k)
        {
            var parts = k.Split(':');
            if (parts.Length != 2 || parts.Any(string.IsNullOrWhiteSpace))
                throw new InvalidOptionException($"--knockout '{k}' is not QUERIES:KEYS (e.g. last:image)");
            knockout = new KnockoutEdit(Group("knockout", parts[0]), Group("knockout", parts[1]),
                option("layers") is { } layers ? ParseLayers("layers", layers) : null);
        }
        else if (option("layers") is not null)
            throw new InvalidOptionException("--layers selects the layers of --knockout; give --knockout Q:K");

        PatchEdit? patch = null;
        string? image = option("patch-image"), prompt = option("patch-prompt");
        if (image is not null || prompt is not null)
        {
            var layer = option("patch-layer") ?? throw new InvalidOptionException("patching needs --patch-layer L|all");
            var positions = option("patch-positions") ?? throw new InvalidOptionException("patching needs --patch-positions last|image|text|all|i,j,...");
            int? l = layer == "all" ? null : ParseLayers("patch-layer", layer) is [var one] ? one
                : throw new InvalidOptionException($"--patch-layer '{layer}' is not one layer or all");
            patch = new PatchEdit(image, prompt, l, Group("patch-positions", positions));
        }
        else if (option("patch-layer") is not null || option("patch-positions") is not null)
            throw new InvalidOptionException("--patch-layer and --patch-positions need a source: --patch-image FILE and/or --patch-prompt TEXT");

        var request = new InterventionRequest(ablation, knockout, patch);
        if (request.IsEmpty)
            throw new InvalidOptionException("no edit given: use --ablate-heads, --knockout, or --patch-image/--patch-prompt");
        return request;
    }

    /// <summary>
    /// Reads the edit options from a command line fragment such as the golden cases' <c>args</c>
    /// (<c>["--knockout", "last:image", "--layers", "0-1"]</c>): "--name value" pairs of <see cref="Options"/> only.
    /// </summary>
    public static InterventionRequest Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Count; i += 2)
        {
            var name = args[i].StartsWith("--", StringComparison.Ordinal) ? args[i][2..] : throw new InvalidOptionException($"unexpected argument '{args[i]}'");
            if (!Options.Any(o => o.Name == name)) throw new InvalidOptionException($"--{name} is not an edit option");
            if (i + 1 >= args.Count) throw new InvalidOptionException($"--{name} needs a value");
            values[name] = args[i + 1];
        }
        return Parse(name => values.GetValueOrDefault(name));
    }

    /// <summary>"1.2,3.0" -> (1, 2), (3, 0), distinct, in the given order.</summary>
    public static IReadOnlyList<(int Layer, int Head)> ParseHeads(string text)
    {
        var heads = new List<(int, int)>();
        foreach (var item in text.Split(','))
        {
            var p = item.Trim().Split('.');
            if (p.Length != 2 || !TryNumber(p[0], out int l) || !TryNumber(p[1], out int h))
                throw new InvalidOptionException($"--ablate-heads: '{item}' is not LAYER.HEAD (e.g. 1.2)");
            if (!heads.Contains((l, h))) heads.Add((l, h));
        }
        return heads;
    }

    /// <summary>"2", "0-1", "0,3" or "0-1,3" -> ascending distinct layers.</summary>
    public static IReadOnlyList<int> ParseLayers(string optionName, string text)
    {
        var layers = new SortedSet<int>();
        foreach (var item in text.Split(','))
        {
            var p = item.Trim().Split('-');
            if (p.Length == 1 && TryNumber(p[0], out int l)) layers.Add(l);
            else if (p.Length == 2 && TryNumber(p[0], out int a) && TryNumber(p[1], out int b) && a <= b)
                for (int x = a; x <= b; x++) layers.Add(x);
            else throw new InvalidOptionException($"--{optionName}: '{item}' is not a layer or a range A-B (A <= B)");
        }
        return layers.ToArray();
    }

    private static PositionGroup Group(string optionName, string text)
    {
        try { return PositionGroup.Parse(text.Trim()); }
        catch (FormatException e) { throw new InvalidOptionException($"--{optionName}: {e.Message}"); }
    }

    private static bool TryNumber(string s, out int n) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out n);
}

/// <summary>
/// One edit as the runner applied it, resolved against the model and the input: the hook point, the layers, and per
/// kind the heads, or the query/key positions and how many (query, key) pairs each head loses, or the patched
/// positions and the source.
/// </summary>
public sealed record AppliedEdit(
    string Kind,
    string Hook,
    int[] Layers)
{
    /// <summary>ablate_heads: "zero" or "mean".</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Mode { get; init; }
    /// <summary>ablate_heads: [layer, head] pairs.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int[][]? Heads { get; init; }
    /// <summary>knockout: the query group as written, and its positions.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Queries { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int[]? QueryPositions { get; init; }
    /// <summary>knockout: the key group as written, and its positions.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Keys { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int[]? KeyPositions { get; init; }
    /// <summary>knockout: (query, key) scores set to -inf per head and layer (causal pairs only; rows that would lose every key are kept).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? KnockedPairs { get; init; }
    /// <summary>patch: the position group as written, and its positions.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Positions { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int[]? PatchedPositions { get; init; }
    /// <summary>patch: the source input's prompt and image (null: no image).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? SourcePrompt { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? SourceImage { get; init; }
    /// <summary>patch: true with --patch-layer all (one edited pass per layer; see <see cref="InterventionResult.Curve"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public bool? EveryLayer { get; init; }
}

/// <summary>A token's probability in the clean and the edited pass.</summary>
public sealed record ComparedToken(
    int Id,
    string Token,
    double CleanProb,
    double EditProb);

/// <summary>One point of the <c>--patch-layer all</c> curve: the edited pass with the patch at <paramref name="Layer"/>.</summary>
public sealed record LayerPoint(
    int Layer,
    [property: JsonPropertyName("edit_logprob")] double EditLogProb,
    double Delta,
    int EditArgmax,
    bool Flipped);

/// <summary>One edited pass measured at the target y: edited log p(y), delta = edited - clean log p(y), the edited argmax, and whether it is no longer y.</summary>
public sealed record EditOutcome(double EditLogProb, double Delta, int EditArgmax, bool Flipped);

/// <summary>
/// The outcome of <c>intervene</c> (docs/METHOD.md, "Interventions"): the target y at the last position (the clean argmax
/// unless named), log p(y) in the clean and the edited pass (float64 log-softmax of the real logits), their difference,
/// whether the edited argmax is no longer y, both top-5s, and the edits as applied. With <c>--patch-layer all</c> the
/// <c>edit_*</c> fields are those of the layer whose patch moves log p(y) most (<see cref="PatchedLayer"/>), and
/// <see cref="Curve"/> has one point per layer.
/// </summary>
public sealed record InterventionResult(
    int TargetId,
    string TargetToken,
    [property: JsonPropertyName("clean_logprob")] double CleanLogProb,
    [property: JsonPropertyName("edit_logprob")] double EditLogProb,
    double Delta,
    bool Flipped,
    int CleanArgmax,
    int EditArgmax,
    double EditTop2Gap,
    TopToken[] CleanTop5,
    TopToken[] EditTop5,
    ComparedToken[] ComparedTokens,
    AppliedEdit[] Edits,
    int SeqLen)
{
    /// <summary>With --patch-layer all: the layer the edit_* fields describe (largest |delta|); else null.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? PatchedLayer { get; init; }
    /// <summary>With --patch-layer all: one point per layer, in layer order; else null.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public LayerPoint[]? Curve { get; init; }
}
