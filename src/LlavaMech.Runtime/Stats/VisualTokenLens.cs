using LlavaMech.Storage;

namespace LlavaMech.Runtime.Stats;

/// <summary>One row of <c>logit_lens</c>: the token at <paramref name="Rank"/> (0 = top) of the lens at one position, with the
/// position's image part, row and column (<see cref="IImagePlaceColumns"/>).</summary>
[Table(TableNames.LogitLens)]
public sealed record LogitLensRow(string ExampleId, int Position, string? ImagePart, int? PatchRow, int? PatchCol, int Rank, int TokenId, string Token)
    : ITableRow<LogitLensRow>, IImagePlaceColumns
{
    public LogitLensRow Checked()
    {
        RowChecks.NonEmpty(ExampleId, nameof(ExampleId));
        return Token is null ? throw new ArgumentException("token must not be null", nameof(Token)) : this;
    }
}

/// <summary>
/// <c>logit_lens</c>: the visual-token logit lens (docs/METHOD.md, "The statistics"): for each image
/// position, the top <see cref="AnalysisSettings.LensTopK"/> tokens of the projector output read out with its own RMS.
/// </summary>
public sealed class VisualTokenLens : Statistic<LogitLensRow>
{
    public override IEnumerable<LogitLensRow> Emit(StatisticInput x)
    {
        if (x.Statistics.Image?.VisualTokenLens is not { } lens) yield break;
        var positions = x.Input.ImagePositions;
        for (int p = 0; p < lens.TopIds.Length && p < positions.Length; p++)
        {
            var (part, row, col) = ImagePlaces.At(x.Input.ImageLayout, positions[p]);
            for (int r = 0; r < lens.TopIds[p].Length; r++)
                yield return new LogitLensRow(x.ExampleId, positions[p], part, row, col, r, lens.TopIds[p][r], x.Model.TokenText(lens.TopIds[p][r]));
        }
    }
}
