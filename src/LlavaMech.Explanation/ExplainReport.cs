using LlavaMech.Analysis;
using LlavaMech.Hooks;
using LlavaMech.Model;
using LlavaMech.Reports;

namespace LlavaMech.Explanation;

/// <summary>
/// What <c>explain</c> draws of one example's analysis: the figures (explain.png, layers.png, heads.png) and the printed
/// top neurons and patch map. Patch maps are laid out on the input's image-token layout. (<c>explain.json</c> is a
/// projection of the example's table rows: LlavaMech.Runtime's <c>Explainer.ToJson</c>.)
/// </summary>
public static class ExplainReport
{
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
    /// or null when the input's base grid is not square (the figures and the text grid draw square grids only; for LLaVA-NeXT
    /// this is the base tile, the whole image squashed to one tile).
    /// </summary>
    public static (float[] Grid, int Side)? LogIncreaseGrid(ExampleAnalysis a, int heatmapHeads) => OnSquareGrid(a, Heatmaps.LogIncrease(a.Statistics, heatmapHeads));

    /// <summary>Writes explain.png (input crop | raw attention | log-increase heatmap), for LLaVA-NeXT explain_highres.png
    /// (<see cref="WriteHighResFigure"/>), layers.png and heads.png into <paramref name="outDir"/>.</summary>
    public static void WriteFigures(LoadedModel model, ExampleAnalysis a, string outDir, int heatmapHeads)
    {
        var s = a.Statistics;
        WriteExplainFigure(model, a, Path.Combine(outDir, "explain.png"), heatmapHeads);
        WriteHighResFigure(model, a, Path.Combine(outDir, "explain_highres.png"), heatmapHeads);
        LayerBars.Write(Path.Combine(outDir, "layers.png"), s.LayerAttnIncrease, s.LayerFfnIncrease, $"layer-level increase of log p('{model.TokenText(s.TargetId)}')");
        var grid = new double[s.HeadIncrease.Length, s.HeadIncrease[0].Length];
        for (int l = 0; l < grid.GetLength(0); l++) for (int h = 0; h < grid.GetLength(1); h++) grid[l, h] = s.HeadIncrease[l][h];
        HeadHeatmap.Write(Path.Combine(outDir, "heads.png"), grid, $"head-level increase of log p('{model.TokenText(s.TargetId)}')");
    }

    /// <summary>
    /// The input crop, the raw-attention map and the log-increase map of the top <paramref name="heatmapHeads"/> heads side by
    /// side (explain.png); nothing when the input has no single square patch grid.
    /// </summary>
    public static void WriteExplainFigure(LoadedModel model, ExampleAnalysis a, string path, int heatmapHeads, string? title = null)
    {
        var s = a.Statistics;
        var image = a.Input.Image!;
        var g = image.Geometry;
        if (OnSquareGrid(a, Heatmaps.RawAttention(s)) is not { } raw || LogIncreaseGrid(a, heatmapHeads) is not { } tool) return;
        var heads = string.Join(", ", s.TopHeads.Take(heatmapHeads).Select(h => $"L{h.Layer}H{h.Head}"));
        ExplanationFigure.Write(path, image.CroppedRgb, g.CropHeight, g.CropWidth, raw.Grid, tool.Grid, raw.Side,
            title ?? $"target '{model.TokenText(s.TargetId)}' (p = {Math.Exp(s.TargetLogProb):0.000})", "raw attention (mean of all heads)", $"log-probability increase ({heads})");
    }

    /// <summary>
    /// LLaVA-NeXT: the log-increase map of the top <paramref name="heatmapHeads"/> heads on the high-resolution grid with its
    /// padding removed, over the picture as given, and the row newlines beside it (<see cref="HighResHeatmap"/>); nothing for
    /// an input without tiles. The base tile's map is explain.png's.
    /// </summary>
    public static void WriteHighResFigure(LoadedModel model, ExampleAnalysis a, string path, int heatmapHeads)
    {
        var layout = a.Input.ImageLayout;
        if (layout?.Tiling is not { } t || a.Input.ImagePath is null) return;
        var values = Heatmaps.LogIncrease(a.Statistics, heatmapHeads);        // [P], per image token
        var grid = new float[t.KeptRows * t.KeptCols];
        var newlines = new float[t.KeptRows];
        for (int i = 0; i < layout.Count; i++)
        {
            var place = layout.PlaceOf(i);
            if (place.Part == ImagePart.Grid) grid[place.Row * t.KeptCols + place.Col] = values[i];
            else if (place.Part == ImagePart.Newline) newlines[place.Row] = values[i];
        }
        var s = a.Statistics;
        var heads = string.Join(", ", s.TopHeads.Take(heatmapHeads).Select(h => $"L{h.Layer}H{h.Head}"));
        HighResHeatmap.Write(path, a.Input.ImagePath, grid, t.KeptRows, t.KeptCols, newlines,
            $"log-probability increase of '{model.TokenText(s.TargetId)}' ({heads}) on the high-resolution tiles");
    }

    /// <summary>Per-image-token values [P] on the base grid (grid 0: LLaVA-1.5's only grid, LLaVA-NeXT's base tile, whose
    /// picture is the input crop), with its side; null when that grid is not square.</summary>
    private static (float[] Grid, int Side)? OnSquareGrid(ExampleAnalysis a, float[] perToken)
    {
        var layout = a.Input.ImageLayout;
        if (layout is null || layout.Grids[0].Rows != layout.Grids[0].Cols) return null;
        return (layout.GridValues(perToken, 0), layout.Grids[0].Rows);
    }

}
