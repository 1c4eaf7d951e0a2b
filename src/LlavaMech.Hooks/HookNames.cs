namespace LlavaMech.Hooks;

/// <summary>
/// The one place hook names are built, in TransformerLens' scheme. Shapes are of the tensor a
/// hook sees before any position selection: B batch, T positions, D hidden, H query heads,
/// KV key/value heads, d head size, I MLP width, P image tokens.
/// </summary>
public static class HookNames
{
    /// <summary>[B, P, D] projector output, one row per image token (what replaces the image tokens' embeddings).</summary>
    public const string ImageFeatures = "vision.hook_image_features";

    /// <summary>The projector output: the same hook point as <see cref="ImageFeatures"/>.</summary>
    public const string ProjectorOut = ImageFeatures;

    /// <summary>[B, N, Dv] output of vision encoder layer l (N = patches + class token), before any post-norm.
    /// Only the layers up to <c>vision_feature_layer</c> run, so later layers' points are never reached.</summary>
    public static string VisionResidPost(int layer) => $"vision.blocks.{layer}.hook_resid_post";

    /// <summary>[B, T, D] token embeddings after the image features are spliced in.</summary>
    public const string Embed = "hook_embed";

    /// <summary>[B, T, D] last decoder layer's output, before the final norm.</summary>
    public const string ResidFinal = "hook_resid_final";

    /// <summary>[B, T, D] x_l: input of decoder layer l.</summary>
    public static string ResidPre(int layer) => $"blocks.{layer}.hook_resid_pre";

    /// <summary>[B, T, D] x_l + a_l: the residual stream between attention and MLP.</summary>
    public static string ResidMid(int layer) => $"blocks.{layer}.hook_resid_mid";

    /// <summary>[B, T, D] x_{l+1}: output of decoder layer l.</summary>
    public static string ResidPost(int layer) => $"blocks.{layer}.hook_resid_post";

    /// <summary>[B, T, KV, d] value vectors after v_proj (values carry no rotary embedding).</summary>
    public static string AttnV(int layer) => $"blocks.{layer}.attn.hook_v";

    /// <summary>[B, T, H, d] queries after q_proj, before the rotary embedding.</summary>
    public static string AttnQ(int layer) => $"blocks.{layer}.attn.hook_q";

    /// <summary>[B, T, KV, d] keys after k_proj, before the rotary embedding.</summary>
    public static string AttnK(int layer) => $"blocks.{layer}.attn.hook_k";

    /// <summary>
    /// [B, H, T, T] pre-softmax attention scores in float32: q k^T / sqrt(d) with the causal mask already applied (-inf
    /// above the diagonal). A replacement is softmaxed as it is, so setting entries to -inf knocks those keys out.
    /// </summary>
    public static string AttnScores(int layer) => $"blocks.{layer}.attn.hook_attn_scores";

    /// <summary>[B, T, H, d] per-head outputs z_h[p] = sum_q A_h[p,q] V_h[q]: the input of o_proj, head by head.</summary>
    public static string AttnZ(int layer) => $"blocks.{layer}.attn.hook_z";

    /// <summary>[B, H, Tq, T] post-softmax attention for the selected query rows Tq (all rows by default).</summary>
    public static string AttnPattern(int layer) => $"blocks.{layer}.attn.hook_pattern";

    /// <summary>[B, T, D] a_l: attention block output after o_proj.</summary>
    public static string AttnOut(int layer) => $"blocks.{layer}.hook_attn_out";

    /// <summary>[B, T, I] MLP coefficients m = silu(gate(n)) * up(n), the input of down_proj.</summary>
    public static string MlpPost(int layer) => $"blocks.{layer}.mlp.hook_post";

    /// <summary>[B, T, D] f_l: MLP output after down_proj.</summary>
    public static string MlpOut(int layer) => $"blocks.{layer}.hook_mlp_out";

    /// <summary>Every hook of a model with <paramref name="layers"/> decoder layers, in the order a forward pass reaches them.</summary>
    public static IReadOnlyList<string> All(int layers, bool hasVision)
    {
        var names = new List<string>();
        if (hasVision) names.Add(ImageFeatures);
        names.Add(Embed);
        for (int l = 0; l < layers; l++)
        {
            names.Add(ResidPre(l));
            names.Add(AttnV(l));
            names.Add(AttnPattern(l));
            names.Add(AttnOut(l));
            names.Add(ResidMid(l));
            names.Add(MlpPost(l));
            names.Add(MlpOut(l));
            names.Add(ResidPost(l));
        }
        names.Add(ResidFinal);
        return names;
    }

    /// <summary>
    /// Every hook point a pass can reach, in forward order: <see cref="All"/> plus the vision tower's layers
    /// (<paramref name="visionLayers"/> of them run) and the attention internals (q, k, scores, z).
    /// </summary>
    public static IReadOnlyList<string> AllPoints(int layers, int visionLayers)
    {
        var names = new List<string>();
        for (int l = 0; l < visionLayers; l++) names.Add(VisionResidPost(l));
        foreach (var n in All(layers, visionLayers > 0))
        {
            int layer = n.StartsWith("blocks.", StringComparison.Ordinal) ? int.Parse(n.AsSpan(7, n.IndexOf('.', 7) - 7)) : -1;
            if (n == AttnV(layer)) { names.Add(AttnQ(layer)); names.Add(AttnK(layer)); }
            if (n == AttnPattern(layer)) { names.Add(AttnScores(layer)); names.Add(n); names.Add(AttnZ(layer)); continue; }
            names.Add(n);
        }
        return names;
    }

    /// <summary>The axis of a hook's tensor that runs over query positions: 2 for scores and patterns ([B, H, Tq, T]), else 1.</summary>
    public static int SequenceAxis(string hook) =>
        hook.EndsWith(".attn.hook_pattern", StringComparison.Ordinal) || hook.EndsWith(".attn.hook_attn_scores", StringComparison.Ordinal) ? 2 : 1;
}
