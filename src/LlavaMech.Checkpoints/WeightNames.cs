using System.Text;

namespace LlavaMech.Checkpoints;

public enum WeightLayout
{
    /// <summary>vision_tower.vision_model.*, multi_modal_projector.*, language_model.model.*, language_model.lm_head.weight (llava-hf as published).</summary>
    LlavaLegacy,
    /// <summary>vision_tower.* (no vision_model), multi_modal_projector.*, language_model.model.*, language_model.lm_head.weight (tests/fixtures/tiny-llava-*).</summary>
    LlavaFlat,
    /// <summary>model.vision_tower.* (no vision_model), model.multi_modal_projector.*, model.language_model.*, lm_head.weight.</summary>
    LlavaTransformers5,
    /// <summary>model.*, lm_head.weight.</summary>
    Llama,
    /// <summary>
    /// model.vision_tower.vision_model.*, model.multi_modal_projector.*, model.language_model.*, lm_head.weight:
    /// what save_pretrained writes since transformers 4.52, whose vision tower is a whole CLIPVisionModel.
    /// </summary>
    LlavaTransformers5Nested,
}

/// <summary>
/// Maps the model's canonical weight names to the keys of the various checkpoint layouts, and checks a
/// checkpoint against the names and shapes a model expects before any tensor is loaded.
/// Canonical names: vision_tower.&lt;rest without vision_model.&gt;, multi_modal_projector.*,
/// language_model.model.*, language_model.lm_head.weight for llava; model.*, lm_head.weight for llama.
/// </summary>
public static class WeightNames
{
    private const int MaxListed = 10;

    private static readonly WeightLayout[] LlavaLayouts =
        [WeightLayout.LlavaLegacy, WeightLayout.LlavaFlat, WeightLayout.LlavaTransformers5, WeightLayout.LlavaTransformers5Nested];

    private static readonly (string Canonical, string File)[] Legacy =
        [("vision_tower.", "vision_tower.vision_model."), ("multi_modal_projector.", "multi_modal_projector."),
         ("language_model.model.", "language_model.model."), ("language_model.lm_head.", "language_model.lm_head."), ("image_newline", "image_newline")];
    private static readonly (string Canonical, string File)[] Flat =
        [("vision_tower.", "vision_tower."), ("multi_modal_projector.", "multi_modal_projector."),
         ("language_model.model.", "language_model.model."), ("language_model.lm_head.", "language_model.lm_head."), ("image_newline", "image_newline")];
    private static readonly (string Canonical, string File)[] T5 =
        [("vision_tower.", "model.vision_tower."), ("multi_modal_projector.", "model.multi_modal_projector."),
         ("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."), ("image_newline", "model.image_newline")];
    private static readonly (string Canonical, string File)[] T5Nested =
        [("vision_tower.", "model.vision_tower.vision_model."), ("multi_modal_projector.", "model.multi_modal_projector."),
         ("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."), ("image_newline", "model.image_newline")];
    private static readonly (string Canonical, string File)[] LlamaMap =
        [("model.", "model."), ("lm_head.", "lm_head.")];

    // Llava sub-module prefixes that must never be read as plain llama "model.*" weights.
    private static readonly string[] LlavaInsideModel = ["model.language_model.", "model.vision_tower.", "model.multi_modal_projector."];

    private static (string Canonical, string File)[] Map(WeightLayout layout) => layout switch
    {
        WeightLayout.LlavaLegacy => Legacy,
        WeightLayout.LlavaFlat => Flat,
        WeightLayout.LlavaTransformers5 => T5,
        WeightLayout.LlavaTransformers5Nested => T5Nested,
        WeightLayout.Llama => LlamaMap,
        _ => throw new ArgumentOutOfRangeException(nameof(layout)),
    };

    public static bool IsLlava(WeightLayout layout) => layout != WeightLayout.Llama;

    public static string ToFile(string canonical, WeightLayout layout)
    {
        foreach (var (c, f) in Map(layout))
            if (canonical.StartsWith(c, StringComparison.Ordinal))
            {
                var rest = canonical[c.Length..];
                // Canonical vision names never carry vision_model; one that does is a caller bug.
                if (c == "vision_tower." && rest.StartsWith("vision_model.", StringComparison.Ordinal))
                    break;
                if (layout == WeightLayout.Llama && LlavaInsideModel.Any(p => canonical.StartsWith(p, StringComparison.Ordinal)))
                    break;
                return f + rest;
            }
        throw new ArgumentException($"'{canonical}' is not a canonical weight name for layout {layout}", nameof(canonical));
    }

    /// <summary>The canonical name of a file key under <paramref name="layout"/>, or null if the layout has no such key.</summary>
    public static string? FromFile(string fileKey, WeightLayout layout)
    {
        if (layout == WeightLayout.Llama && LlavaInsideModel.Any(p => fileKey.StartsWith(p, StringComparison.Ordinal)))
            return null;
        // Try the longest file prefix first so "vision_tower.vision_model." is not read as flat "vision_tower.".
        foreach (var (c, f) in Map(layout).OrderByDescending(m => m.File.Length))
            if (fileKey.StartsWith(f, StringComparison.Ordinal))
            {
                var rest = fileKey[f.Length..];
                if (c == "vision_tower." && rest.StartsWith("vision_model.", StringComparison.Ordinal)) return null;
                return c + rest;
            }
        return null;
    }

    public static WeightLayout Detect(IEnumerable<string> fileKeys, ModelKind kind) => Detect(fileKeys.ToList(), kind, null);

    /// <summary>The layout of <paramref name="ckpt"/>; the error names the checkpoint's file.</summary>
    public static WeightLayout Detect(Checkpoint ckpt, ModelKind kind) => Detect(ckpt.Tensors.Keys.ToList(), kind, ckpt.IndexPath ?? ckpt.Files[0].Path);

    private static WeightLayout Detect(List<string> keys, ModelKind kind, string? source)
    {
        var candidates = kind != ModelKind.Llama ? LlavaLayouts : [WeightLayout.Llama];
        var (best, score) = BestOf(keys, candidates);
        if (score > 0) return best;

        var where = source is null ? "the checkpoint" : $"checkpoint '{source}'";
        var sample = keys.Count == 0 ? "it has no tensors" : $"its {keys.Count} keys include {Quote(keys.Take(3))}";
        var expected = kind != ModelKind.Llama
            ? "language_model.model.* or model.language_model.* with vision_tower.[vision_model.]* or model.vision_tower.[vision_model.]*"
            : "model.* and lm_head.weight";
        var other = kind != ModelKind.Llama ? [WeightLayout.Llama] : LlavaLayouts;
        var (otherBest, otherScore) = BestOf(keys, other);
        var hint = otherScore > 0
            ? $"; it looks like a {(kind != ModelKind.Llama ? "plain Llama" : "LLaVA")} checkpoint (layout {otherBest}), so config.json and the weights disagree"
            : "";
        throw new CheckpointException(
            $"cannot recognise the weight layout of {where} for a {(kind != ModelKind.Llama ? "LLaVA" : "Llama")} model: " +
            $"expected {expected}, but {sample}{hint}");
    }

    // Scores by "body" keys: lm_head.weight alone is shared by several layouts and proves nothing.
    private static (WeightLayout Layout, int Score) BestOf(List<string> keys, WeightLayout[] candidates)
    {
        WeightLayout best = candidates[0];
        int bestScore = 0;
        foreach (var layout in candidates)
        {
            int score = 0;
            foreach (var k in keys)
            {
                var c = FromFile(k, layout);
                if (c is not null && !c.Contains("lm_head.", StringComparison.Ordinal)) score++;
            }
            if (score > bestScore) (best, bestScore) = (layout, score);
        }
        return (best, bestScore);
    }

    /// <summary>
    /// Checks the checkpoint against the expected canonical names and shapes; returns canonical -> file key.
    /// The caller decides about a tied lm_head: leave it out of the expected set and its presence or absence
    /// in the file is accepted. Non-parameter buffers some exporters keep (rotary inv_freq, CLIP position_ids)
    /// are ignored.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Bind(Checkpoint ckpt, IReadOnlyDictionary<string, long[]> expectedCanonicalShapes,
        ModelKind kind)
    {
        var keys = ckpt.Tensors.Keys.ToList();
        var layout = Detect(ckpt, kind);

        var bound = new Dictionary<string, string>(StringComparer.Ordinal);
        var missing = new List<string>();
        var mismatched = new List<string>();
        foreach (var (canonical, shape) in expectedCanonicalShapes)
        {
            var fileKey = ToFile(canonical, layout);
            if (!ckpt.Tensors.TryGetValue(fileKey, out var entry))
            {
                missing.Add(fileKey == canonical ? $"'{canonical}'" : $"'{canonical}' (file key '{fileKey}')");
                continue;
            }
            if (!Shapes.SameShape(entry.Shape, shape))
                mismatched.Add($"{ckpt.Describe(fileKey)} has shape {Shapes.Format(entry.Shape)}, expected {Shapes.Format(shape)}");
            bound[canonical] = fileKey;
        }

        var used = new HashSet<string>(bound.Values, StringComparer.Ordinal);
        var unexpected = new List<string>();
        foreach (var k in keys)
        {
            if (used.Contains(k)) continue;
            var canonical = FromFile(k, layout);
            if (canonical is not null && IsIgnorable(canonical, expectedCanonicalShapes)) continue;
            unexpected.Add(ckpt.Describe(k));
        }

        if (missing.Count == 0 && unexpected.Count == 0 && mismatched.Count == 0) return bound;

        var sb = new StringBuilder();
        sb.Append($"checkpoint '{ckpt.IndexPath ?? ckpt.Files[0].Path}' (layout {layout}) does not match the model:");
        AppendList(sb, missing, "missing weight", "missing weights");
        AppendList(sb, unexpected, "unexpected weight", "unexpected weights");
        AppendList(sb, mismatched, "shape mismatch", "shape mismatches");
        throw new CheckpointException(sb.ToString());
    }

    private static bool IsIgnorable(string canonical, IReadOnlyDictionary<string, long[]> expected)
    {
        if (canonical.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) return true;
        if (canonical.EndsWith("embeddings.position_ids", StringComparison.Ordinal)) return true;
        // A tied model may still carry its lm_head copy; the tie makes it irrelevant.
        if (canonical is "lm_head.weight" or "language_model.lm_head.weight" && !expected.ContainsKey(canonical)) return true;
        return false;
    }

    private static void AppendList(StringBuilder sb, List<string> items, string singular, string plural)
    {
        if (items.Count == 0) return;
        sb.Append($"\n  {items.Count} {(items.Count == 1 ? singular : plural)}:");
        foreach (var i in items.Take(MaxListed)) sb.Append("\n    ").Append(i);
        if (items.Count > MaxListed) sb.Append($"\n    ... and {items.Count - MaxListed} more");
    }

    private static string Quote(IEnumerable<string> names) => string.Join(", ", names.Select(n => $"'{n}'"));
}
