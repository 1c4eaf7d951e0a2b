using System.Text.Json.Nodes;
using LlavaMech.Analysis;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Explanation;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Reports;
using LlavaMech.Runtime.Stats;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime;

/// <summary>One example explained: the analysis the figures draw, and the rows every statistic of the pipeline emits for it.</summary>
/// <param name="Rows">null when a statistic is not finite (<see cref="ExampleStatistics.FirstNonFinite"/> names it): like the
/// pipeline, which rejects such an example, nothing is made of it.</param>
public sealed record Explained(ExampleAnalysis Analysis, ExampleRows? Rows);

/// <summary>
/// <c>explain</c>'s example path: the pipeline's runner (<see cref="ExampleAnalyzer.Run{T}"/>) with the hooks of every
/// statistic of <see cref="StatisticCatalog"/>, and the same rows the pipeline writes to Parquet, so that
/// <c>explain.json</c> (<see cref="ToJson"/>) is a projection of those rows plus the views only the figures need.
/// </summary>
public static class Explainer
{
    /// <summary>The <c>example_id</c> of the explained example's rows.</summary>
    public const string ExampleId = "explain";

    /// <summary>One hooked pass and every statistic's rows for one prepared example.</summary>
    /// <param name="heatmapHeads">top heads whose position scores make the log-increase heatmap (a view of explain alone).</param>
    /// <param name="residualLensLayers">layers whose residual stream at image positions gets the logit lens (none by default).</param>
    public static Explained Run(ExampleAnalyzer analyzer, ModelInput input, AnalysisSettings settings, int? targetId,
        int heatmapHeads = 1, IReadOnlyList<int>? residualLensLayers = null)
    {
        var model = analyzer.Model;
        var work = new ManifestExample(ExampleId, input.PixelValues is null ? ManifestTasks.Tqa : ManifestTasks.Vqa, input.ImagePath,
            input.ImagePath is null ? null : Path.GetFileName(input.ImagePath), input.Prompt, null, null, "{}", 0);
        var options = settings.ToStatisticsOptions(targetId) with { HeatmapHeads = heatmapHeads };
        var plan = StatisticCatalog.Plan(model.Layers, input.PixelValues is not null);
        return analyzer.Run([input], _ => options, plan, residualLensLayers, (_, a, captures) => new Explained(
            a with
            {
                TopHeadAttention = a.Statistics.TopHeads.Select(h => (h.Layer, h.Head,
                    captures.Activations.PatternLastRow[h.Layer, h.Head].to(ScalarType.Float64).cpu().data<double>().ToArray())).ToList(),
            },
            a.Statistics.FirstNonFinite() is null ? StatisticCatalog.Rows(new StatisticInput(work, a.Input, a.Statistics, captures, model, settings)) : null))[0];
    }

    /// <summary>
    /// <c>explain --out</c>: explain.json (<see cref="ToJson"/>) and the figures (<see cref="ExplainReport.WriteFigures"/>) into
    /// <paramref name="outDir"/>, all or nothing (<see cref="OutputFolder.WriteAtomically"/>). A statistic that is not finite
    /// (an fp16 overflow, a corrupt weight row) would make figures and numbers meaningless: nothing is written then.
    /// Returns the explain.json tree.
    /// </summary>
    public static JsonObject Write(LoadedModel model, Explained e, string outDir, int heatmapHeads)
    {
        if (e.Analysis.Statistics.FirstNonFinite() is { } bad)
            throw new InvalidOperationException($"non-finite statistic {bad}: the model's pass on this input is not finite (dtype {model.DType}); nothing written to {outDir}");
        var json = ToJson(model, e);
        OutputFolder.WriteAtomically(outDir, dir =>
        {
            File.WriteAllText(Path.Combine(dir, "explain.json"), Json.Serialize(json.DeepClone(), indented: true));
            ExplainReport.WriteFigures(model, e.Analysis, dir, heatmapHeads);
        });
        return json;
    }

    /// <summary>
    /// explain.json as a JSON tree (non-finite numbers still in it: the writer's policy decides how they are written).
    /// Every field that a table holds is read from the example's rows: target and top-5 (<c>examples</c>), layer
    /// increases (<c>layer_stats</c>), the head grid and its image-attention share (<c>head_stats</c>), top heads and their
    /// position scores (<c>position_stats</c>), top neurons (<c>neuron_stats</c>), the visual-token lens
    /// (<c>logit_lens</c>). The rest are views of the figures: image positions, the raw-attention baseline, the
    /// heatmap, the lens' target ranks, the residual lens and timings.
    /// </summary>
    public static JsonObject ToJson(LoadedModel model, Explained e)
    {
        var (a, rows) = (e.Analysis, e.Rows ?? throw new InvalidOperationException($"non-finite statistic {e.Analysis.Statistics.FirstNonFinite()}: no rows to project"));
        var s = a.Statistics;
        var img = s.Image!;
        var example = rows.Example;
        var meta = JsonNode.Parse(example.Metadata)!["llavamech"]!;
        var layers = rows.Of<LayerStatRow>();
        var heads = rows.Of<HeadStatRow>();
        int nLayers = heads.Count == 0 ? 0 : heads.Max(h => h.Layer) + 1, nHeads = heads.Count == 0 ? 0 : heads.Max(h => h.Head) + 1;
        JsonArray HeadGrid(Func<HeadStatRow, double?> value) => new(Enumerable.Range(0, nLayers).Select(l => (JsonNode)new JsonArray(
            heads.Where(h => h.Layer == l).OrderBy(h => h.Head).Select(h => (JsonNode?)JsonValue.Create(value(h))).ToArray())).ToArray());
        var headScore = heads.ToDictionary(h => (h.Layer, h.Head), h => h.LogProbIncrease);
        var byHead = rows.Of<PositionStatRow>().GroupBy(p => (p.Layer, p.Head)).ToList();   // top heads, best first
        var positions = new JsonObject();
        foreach (var g in byHead) positions[$"{g.Key.Layer}_{g.Key.Head}"] = Arr(g.OrderBy(p => p.Position).Select(p => p.LogProbIncrease));
        var lens = rows.Of<LogitLensRow>().GroupBy(r => r.Position).ToList();
        return new JsonObject
        {
            ["model"] = model.Directory,
            ["image"] = a.Input.ImagePath,
            ["prompt"] = example.Prompt,
            ["seq_len"] = example.SeqLen,
            ["target_id"] = example.TargetId,
            ["target_token"] = example.TargetToken,
            ["target_prob"] = example.TargetProb,
            ["top5"] = meta["top5"]!.DeepClone(),
            ["layer_attn_increase"] = Arr(layers.Where(r => r.Component == Components.Attention).OrderBy(r => r.Layer).Select(r => r.LogProbIncrease)),
            ["layer_ffn_increase"] = Arr(layers.Where(r => r.Component == Components.Ffn).OrderBy(r => r.Layer).Select(r => r.LogProbIncrease)),
            ["head_increase"] = HeadGrid(h => h.LogProbIncrease),
            ["top_heads"] = new JsonArray(byHead.Select(g => (JsonNode)new JsonArray(g.Key.Layer, g.Key.Head, headScore[g.Key])).ToArray()),
            ["position_increase"] = positions,
            ["image_positions"] = new JsonArray(img.ImagePositions.Select(p => (JsonNode)p).ToArray()),
            ["image_layout"] = Layout(a.Input.ImageLayout),
            [TableNames.ImagePartShares] = PartShares(rows.Of<ImagePartShareRow>()),
            ["attention_baseline_image"] = Arr(img.AttentionBaseline),
            ["log_increase_heatmap"] = new JsonArray(img.Heatmap.Select(r => (JsonNode)Arr(r)).ToArray()),
            ["heatmap_heads"] = new JsonArray(img.HeatmapHeads.Select(h => (JsonNode)new JsonArray(h.Layer, h.Head)).ToArray()),
            ["image_attention_share"] = HeadGrid(h => h.AttnToImage),
            ["logit_lens_image_top5"] = lens.Count == 0 ? null : new JsonArray(lens.Select(g => (JsonNode)new JsonArray(
                g.OrderBy(r => r.Rank).Select(r => (JsonNode)r.TokenId).ToArray())).ToArray()),
            ["logit_lens_image_target_rank"] = img.VisualTokenLens is null ? null : new JsonArray(img.VisualTokenLens.TargetRank.Select(i => (JsonNode)i).ToArray()),
            ["top_neurons"] = new JsonArray(rows.Of<NeuronStatRow>().Select(n => (JsonNode)new JsonArray(n.Layer, n.Neuron, n.LogProbIncrease)).ToArray()),
            ["neuron_route"] = meta["neuron_route"]?.DeepClone(),
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

    /// <summary>
    /// Where each image position lies (in the order of <c>image_positions</c>): [part, row, col] with part base / grid /
    /// newline / cls (the columns of <c>position_stats</c>), and for LLaVA-NeXT the tiling (tile grid, feature grid, the kept
    /// rows and columns after unpadding, the original size) that maps the grid back onto the picture.
    /// </summary>
    private static JsonNode? Layout(ImageTokenLayout? layout)
    {
        if (layout is null) return null;
        var t = layout.Tiling;
        return new JsonObject
        {
            ["places"] = new JsonArray(layout.Positions.Select(p =>
            {
                var (part, row, col) = ImagePlaces.At(layout, p);
                return (JsonNode)new JsonArray(part, row, col);
            }).ToArray()),
            ["tiling"] = t is null ? null : new JsonObject
            {
                ["image_size_hw"] = new JsonArray(t.ImageHeight, t.ImageWidth),
                ["tile_grid_rows_cols"] = new JsonArray(t.TileRows, t.TileCols),
                ["feature_grid_rows_cols"] = new JsonArray(t.FeatureRows, t.FeatureCols),
                ["unpadded_grid_rows_cols"] = new JsonArray(t.KeptRows, t.KeptCols),
                ["unpadded_first_row_col"] = new JsonArray(t.KeepRowStart, t.KeepColStart),
                ["base_tokens"] = t.PatchesPerTile * t.PatchesPerTile,
                ["newline_tokens"] = t.KeptRows,
            },
        };
    }

    /// <summary>Per head "L_H": { part: [attention share, log-increase share or null] } (<c>image_part_shares</c>); null without rows.</summary>
    private static JsonNode? PartShares(IReadOnlyList<ImagePartShareRow> rows)
    {
        if (rows.Count == 0) return null;
        var o = new JsonObject();
        foreach (var g in rows.GroupBy(r => (r.Layer, r.Head)))
        {
            var parts = new JsonObject();
            foreach (var r in g) parts[r.Part] = new JsonArray(r.AttnShare, r.LogIncreaseShare);
            o[$"{g.Key.Layer}_{g.Key.Head}"] = parts;
        }
        return o;
    }

    private static JsonArray Arr(IEnumerable<double> v) => new(v.Select(x => (JsonNode)x).ToArray());
    private static JsonArray Arr(IEnumerable<float> v) => new(v.Select(x => (JsonNode)x).ToArray());
    private static JsonArray Ids(int[][] ids) => new(ids.Select(r => (JsonNode)new JsonArray(r.Select(i => (JsonNode)i).ToArray())).ToArray());
}
