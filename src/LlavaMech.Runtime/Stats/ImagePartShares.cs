using LlavaMech.Hooks;
using LlavaMech.Storage;
using static TorchSharp.torch;

namespace LlavaMech.Runtime.Stats;

/// <summary>
/// One row of <c>image_part_shares</c>: of one head's attention from the last position to the image, the share on one
/// image part (LLaVA-NeXT: <c>base</c> = the downscaled whole image, <c>grid</c> = the high-resolution tiles, <c>newline</c>);
/// for the top heads also the share of the head's image log-increase through that part.
/// </summary>
/// <param name="AttnShare">attention on the part's positions / attention on all image positions (0 when the head gives the image none).</param>
/// <param name="LogIncreaseShare">the head's log-prob increase through the part's positions / through all image positions (signed;
/// the parts sum to 1); null for heads without position scores (not among the top heads) or a zero total.</param>
[Table(TableNames.ImagePartShares)]
public sealed record ImagePartShareRow(string ExampleId, string Task, int Layer, int Head, string Part, double AttnShare, double? LogIncreaseShare)
    : ITableRow<ImagePartShareRow>
{
    public ImagePartShareRow Checked() { RowChecks.NonEmpty(ExampleId, nameof(ExampleId)); RowChecks.NonEmpty(Part, nameof(Part)); return this; }
}

/// <summary>
/// <c>image_part_shares</c>: LLaVA-NeXT's own question, per example and head: does the head read the thumbnail (base), the
/// tiles (grid) or the row newlines? Rows only for images with several parts (LLaVA-1.5's image is all <c>base</c>).
/// Reads the captured last pattern row and the top heads' position scores; no [L, H, T, T] tensor.
/// </summary>
public sealed class ImagePartShares : Statistic<ImagePartShareRow>
{
    private static readonly string[] Parts = [ImageParts.Base, ImageParts.Grid, ImageParts.Newline];

    public override IEnumerable<ImagePartShareRow> Emit(StatisticInput x)
    {
        var layout = x.Input.ImageLayout;
        if (layout?.Tiling is null) return [];
        var acts = x.Captures.Activations;
        int L = acts.Layers, H = acts.Heads;
        // The image positions of each part.
        var byPart = Parts.Select(part => layout.Positions.Where(p => layout.PlaceAt(p)!.Value.PartName == part).ToArray()).ToArray();
        using var scope = NewDisposeScope();
        var imagePos = tensor(layout.Positions.Select(p => (long)p).ToArray(), device: acts.PatternLastRow.device);
        var rowsAttn = acts.PatternLastRow.reshape(L * H, acts.Positions).to(ScalarType.Float64);
        var total = rowsAttn.index_select(1, imagePos).sum(1).cpu().data<double>().ToArray();
        var partAttn = byPart.Select(pos => pos.Length == 0 ? new double[L * H]
            : rowsAttn.index_select(1, tensor(pos.Select(p => (long)p).ToArray(), device: rowsAttn.device)).sum(1).cpu().data<double>().ToArray()).ToArray();
        var scores = x.Statistics.PositionIncrease.ToDictionary(p => (p.Layer, p.Head), p => p.Scores);
        var rows = new List<ImagePartShareRow>(L * H * Parts.Length);
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++)
            {
                int k = l * H + h;
                double? totalInc = null;
                double[]? s = scores.TryGetValue((l, h), out var sc) ? sc : null;
                if (s is not null) totalInc = layout.Positions.Sum(p => s[p]);
                for (int i = 0; i < Parts.Length; i++)
                {
                    double? inc = s is null || totalInc is null or 0 ? null : byPart[i].Sum(p => s[p]) / totalInc.Value;
                    rows.Add(new ImagePartShareRow(x.ExampleId, x.Work.Task, l, h, Parts[i], total[k] > 0 ? partAttn[i][k] / total[k] : 0, inc));
                }
            }
        return rows;
    }
}
