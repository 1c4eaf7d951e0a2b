namespace LlavaMech.Analysis;

/// <summary>
/// Where an example's statistics stop being numbers: an fp16 overflow or a corrupt weight row makes the pass yield NaN
/// or infinity, and every statistic derived from it follows. Callers reject such an example (it cannot be stored or
/// explained) and name the first non-finite value so the fault can be traced.
/// </summary>
public static class NonFinite
{
    /// <summary>
    /// The first non-finite statistic, in the order of the <c>explain.json</c> fields (target log-probability, top-5
    /// probabilities, frozen scale, layer, head, position, neuron, image statistics, residual lens), e.g.
    /// <c>head_increase at layer 1 head 2 (NaN)</c>; null when every value is finite.
    /// </summary>
    public static string? FirstNonFinite(this ExampleStatistics s)
    {
        if (Bad(s.TargetLogProb) is { } t) return $"target_log_prob ({t})";
        if (First(s.Top5Probs) is { } p) return $"top5 prob at rank {p.Index} ({p.Value})";
        if (Bad(s.FrozenScale) is { } f) return $"frozen_scale ({f})";
        if (First(s.LayerAttnIncrease) is { } la) return $"layer_attn_increase at layer {la.Index} ({la.Value})";
        if (First(s.LayerFfnIncrease) is { } lf) return $"layer_ffn_increase at layer {lf.Index} ({lf.Value})";
        if (First(s.HeadIncrease) is { } h) return $"head_increase at layer {h.Row} head {h.Index} ({h.Value})";
        foreach (var pos in s.PositionIncrease)
            if (First(pos.Scores) is { } q) return $"position_increase at layer {pos.Layer} head {pos.Head} position {q.Index} ({q.Value})";
        if (s.Neurons is { } n)
            for (int l = 0; l < n.Scores.Length; l++)
                for (int i = 0; i < n.Scores[l].Length; i++)
                    if (n.IsExact(l, i) && Bad(n.Scores[l][i]) is { } v) return $"neuron_increase at layer {l} neuron {i} ({v})";
        if (s.Image is { } img)
        {
            if (First(img.AttentionBaseline) is { } a) return $"attention_baseline_image at image position {a.Index} ({a.Value})";
            if (First(img.ImageAttentionShare) is { } ia) return $"image_attention_share at layer {ia.Row} head {ia.Index} ({ia.Value})";
            if (First(img.TextAttentionShare) is { } ta) return $"text_attention_share at layer {ta.Row} head {ta.Index} ({ta.Value})";
            if (First(img.Heatmap) is { } hm) return $"log_increase_heatmap at row {hm.Row} col {hm.Index} ({hm.Value})";
        }
        return null;
    }

    /// <summary>"NaN", "+Inf" or "-Inf" for a non-finite value; null for a finite one.</summary>
    public static string? Bad(double v) =>
        double.IsNaN(v) ? "NaN" : double.IsPositiveInfinity(v) ? "+Inf" : double.IsNegativeInfinity(v) ? "-Inf" : null;

    private static (int Index, string Value)? First(double[] values)
    {
        for (int i = 0; i < values.Length; i++)
            if (Bad(values[i]) is { } b) return (i, b);
        return null;
    }

    private static (int Row, int Index, string Value)? First(double[][] rows)
    {
        for (int r = 0; r < rows.Length; r++)
            if (First(rows[r]) is { } f) return (r, f.Index, f.Value);
        return null;
    }
}
