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
}
