using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Stats;

/// <summary>One row of <c>position_stats</c>: one head's contribution through one source position.</summary>
/// <param name="ImagePart">the image part of the position (<see cref="IImagePlaceColumns"/>); null for text positions.</param>
/// <param name="PatchRow">row in that part's grid; null for text positions (and the CLS token).</param>
[Table(TableNames.PositionStats)]
public sealed record PositionStatRow(
    string ExampleId,
    int Layer,
    int Head,
    int Position,
    bool IsImage,
    string? ImagePart,
    int? PatchRow,
    int? PatchCol,
    double LogProbIncrease,
    double AttnWeight) : ITableRow<PositionStatRow>, IImagePlaceColumns
{
    public PositionStatRow Checked() { RowChecks.NonEmpty(ExampleId, nameof(ExampleId)); return this; }
}

/// <summary>
/// <c>position_stats</c>: for each top head (by head increase), one row per sequence position: its log-prob increase
/// through that position (docs/METHOD.md, "The statistics") and the head's post-softmax attention weight from the last
/// position to it (the captured last pattern row).
/// </summary>
public sealed class PositionStatistic : Statistic<PositionStatRow>
{
    public override IEnumerable<PositionStatRow> Emit(StatisticInput x)
    {
        var s = x.Statistics;
        if (s.PositionIncrease.Length == 0) return [];
        var acts = x.Captures.Activations;
        var layout = x.Input.ImageLayout;
        var sel = tensor(s.PositionIncrease.Select(p => (long)p.Layer * acts.Heads + p.Head).ToArray(), device: acts.PatternLastRow.device);
        var weights = acts.PatternLastRow.reshape(-1, acts.Positions).index_select(0, sel).to(ScalarType.Float64).cpu().data<double>().ToArray();
        int T = acts.Positions;
        var rows = new List<PositionStatRow>(s.PositionIncrease.Length * T);
        for (int i = 0; i < s.PositionIncrease.Length; i++)
        {
            var p = s.PositionIncrease[i];
            for (int t = 0; t < p.Scores.Length; t++)
            {
                var (part, row, col) = ImagePlaces.At(layout, t);
                rows.Add(new PositionStatRow(x.ExampleId, p.Layer, p.Head, t, layout?.Contains(t) == true, part, row, col, p.Scores[t], weights[i * T + t]));
            }
        }
        return rows;
    }
}

/// <summary>The <see cref="IImagePlaceColumns"/> values of a sequence position, from the input's image-token layout.</summary>
public static class ImagePlaces
{
    /// <summary>(part, row, col) at <paramref name="position"/>; all null for a text position, row and col null for the class token.</summary>
    public static (string? Part, int? Row, int? Col) At(LlavaMech.Hooks.ImageTokenLayout? layout, int position)
    {
        if (layout?.PlaceAt(position) is not { } place) return (null, null, null);
        return place.Part == LlavaMech.Hooks.ImagePart.Cls ? (ImageParts.Cls, null, null) : (place.PartName, place.Row, place.Col);
    }
}
