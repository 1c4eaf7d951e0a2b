using System.Text.Json.Nodes;
using LlavaMech.Analysis;
using LlavaMech.Model;
using LlavaMech.Reports;

namespace LlavaMech.Explanation;

/// <summary>
/// What <c>explain</c> makes of one example's analysis: the <c>explain.json</c> contract (a projection of the
/// statistics; README, "explain.json") and the figures (explain.png, layers.png, heads.png). Patch maps are laid out
/// on the input's image-token layout.
/// </summary>
public static class ExplainReport
{
    /// <summary>explain.json as a JSON tree (non-finite numbers still in it: the writer's policy decides how they are written).</summary>
    public static JsonObject ToJson(LoadedModel model, ExampleAnalysis a)
    {
        var s = a.Statistics;
        var img = s.Image!;
        var positions = new JsonObject();
        foreach (var p in s.PositionIncrease) positions[$"{p.Layer}_{p.Head}"] = Arr(p.Scores);
        var topNeurons = TopNeurons(s, 20);
        return new JsonObject
        {
            ["model"] = model.Directory,
            ["image"] = a.Input.ImagePath,
            ["prompt"] = a.Input.Prompt,
            ["seq_len"] = a.Input.SeqLen,
            ["target_id"] = s.TargetId,
            ["target_token"] = model.TokenText(s.TargetId),
            ["target_prob"] = Math.Exp(s.TargetLogProb),
            ["top5"] = new JsonArray(s.Top5Ids.Select((id, i) => (JsonNode)new JsonObject { ["id"] = id, ["token"] = model.TokenText(id), ["prob"] = s.Top5Probs[i] }).ToArray()),
            ["layer_attn_increase"] = Arr(s.LayerAttnIncrease),
            ["layer_ffn_increase"] = Arr(s.LayerFfnIncrease),
            ["head_increase"] = new JsonArray(s.HeadIncrease.Select(r => (JsonNode)Arr(r)).ToArray()),
            ["top_heads"] = new JsonArray(s.TopHeads.Select(h => (JsonNode)new JsonArray(h.Layer, h.Head, h.Score)).ToArray()),
            ["position_increase"] = positions,
            ["image_positions"] = new JsonArray(img.ImagePositions.Select(p => (JsonNode)p).ToArray()),
            ["attention_baseline_image"] = Arr(img.AttentionBaseline),
            ["log_increase_heatmap"] = new JsonArray(img.Heatmap.Select(r => (JsonNode)Arr(r)).ToArray()),
            ["heatmap_heads"] = new JsonArray(img.HeatmapHeads.Select(h => (JsonNode)new JsonArray(h.Layer, h.Head)).ToArray()),
            ["image_attention_share"] = new JsonArray(img.ImageAttentionShare.Select(r => (JsonNode)Arr(r)).ToArray()),
            ["logit_lens_image_top5"] = img.VisualTokenLens is null ? null : new JsonArray(img.VisualTokenLens.TopIds.Select(r => (JsonNode)new JsonArray(r.Select(i => (JsonNode)i).ToArray())).ToArray()),
            ["logit_lens_image_target_rank"] = img.VisualTokenLens is null ? null : new JsonArray(img.VisualTokenLens.TargetRank.Select(i => (JsonNode)i).ToArray()),
            ["top_neurons"] = new JsonArray(topNeurons.Select(n => (JsonNode)new JsonArray(n.Layer, n.Neuron, n.Score)).ToArray()),
            ["neuron_route"] = s.Neurons?.Route.ToString().ToLowerInvariant(),
            ["residual_lens"] = s.ResidualLens is null ? null : new JsonArray(s.ResidualLens.Select(r => (JsonNode)new JsonObject
            {
                ["layer"] = r.Layer,
                ["resid_top5"] = Ids(r.Resid.TopIds),
                ["attention_part_top5"] = Ids(r.AttentionPart.TopIds),
                ["ffn_part_top5"] = Ids(r.FfnPart.TopIds),
                ["resid_target_rank"] = new JsonArray(r.Resid.TargetRank.Select(i => (JsonNode)i).ToArray()),
            }).ToArray()),
            ["timings_ms"] = new JsonObject { ["forward"] = a.ForwardMs, ["statistics"] = a.StatisticsMs },
        };
    }

    /// <summary>The <paramref name="n"/> neurons with the largest exact scores, best first.</summary>
    public static IReadOnlyList<(int Layer, int Neuron, double Score)> TopNeurons(ExampleStatistics s, int n)
    {
        if (s.Neurons is null) return [];
        var scores = s.Neurons.Scores;
        var all = new List<(int, int, double)>(scores.Length * s.Neurons.Width);
        for (int l = 0; l < scores.Length; l++)
            for (int i = 0; i < scores[l].Length; i++)
                if (s.Neurons.IsExact(l, i)) all.Add((l, i, scores[l][i]));
        return all.OrderByDescending(x => x.Item3).Take(n).ToList();
    }

    /// <summary>
    /// The log-increase map of the top <paramref name="heatmapHeads"/> heads on the patch grid (row-major) with its side,
    /// or null when the input's grid is not one square grid (the figures and the text grid draw square grids only).
    /// </summary>
    public static (float[] Grid, int Side)? LogIncreaseGrid(ExampleAnalysis a, int heatmapHeads) => OnSquareGrid(a, Heatmaps.LogIncrease(a.Statistics, heatmapHeads));

    /// <summary>Writes explain.png (input crop | raw attention | log-increase heatmap), layers.png and heads.png into <paramref name="outDir"/>.</summary>
    public static void WriteFigures(LoadedModel model, ExampleAnalysis a, string outDir, int heatmapHeads)
    {
        var s = a.Statistics;
        var image = a.Input.Image!;
        var g = image.Geometry;
        if (OnSquareGrid(a, Heatmaps.RawAttention(s)) is { } raw && LogIncreaseGrid(a, heatmapHeads) is { } tool)
        {
            var heads = string.Join(", ", s.TopHeads.Take(heatmapHeads).Select(h => $"L{h.Layer}H{h.Head}"));
            ExplanationFigure.Write(Path.Combine(outDir, "explain.png"), image.CroppedRgb, g.CropHeight, g.CropWidth, raw.Grid, tool.Grid, raw.Side,
                $"target '{model.TokenText(s.TargetId)}' (p = {Math.Exp(s.TargetLogProb):0.000})", "raw attention (mean of all heads)", $"log-probability increase ({heads})");
        }
        LayerBars.Write(Path.Combine(outDir, "layers.png"), s.LayerAttnIncrease, s.LayerFfnIncrease, $"layer-level increase of log p('{model.TokenText(s.TargetId)}')");
        var grid = new double[s.HeadIncrease.Length, s.HeadIncrease[0].Length];
        for (int l = 0; l < grid.GetLength(0); l++) for (int h = 0; h < grid.GetLength(1); h++) grid[l, h] = s.HeadIncrease[l][h];
        HeadHeatmap.Write(Path.Combine(outDir, "heads.png"), grid, $"head-level increase of log p('{model.TokenText(s.TargetId)}')");
    }

    /// <summary>Per-image-token values [P] as the patch grid's values and side, or null without one square grid.</summary>
    private static (float[] Grid, int Side)? OnSquareGrid(ExampleAnalysis a, float[] perToken)
    {
        var layout = a.Input.ImageLayout;
        if (layout is null || layout.Grids.Count != 1 || layout.Grid.Rows != layout.Grid.Cols) return null;
        return (layout.GridValues(perToken), layout.Grid.Side);
    }

    private static JsonArray Arr(IEnumerable<double> v) => new(v.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());
    private static JsonArray Ids(int[][] rows) => new(rows.Select(r => (JsonNode)new JsonArray(r.Select(i => (JsonNode)i).ToArray())).ToArray());
}
