namespace LlavaMech.Datasets;

/// <summary>Knobs of <see cref="SynthColors.Generate"/>; the defaults made datasets/shapes-colors-mini.</summary>
public sealed record SynthOptions
{
    /// <summary>Side of the square images in pixels (square because CLIP centre-crops to a square).</summary>
    public int ImageSize { get; init; } = 84;

    public int MinObjects { get; init; } = 1;
    public int MaxObjects { get; init; } = 4;

    /// <summary>Smallest object side; default max(14, ImageSize/6) so an object spans a 14 px patch.</summary>
    public int? MinObjectSize { get; init; }

    /// <summary>Largest object side; default max(min, 0.36 * ImageSize).</summary>
    public int? MaxObjectSize { get; init; }

    /// <summary>Free pixels kept between object boxes.</summary>
    public int MinGap { get; init; } = 2;

    /// <summary>Colour names (from <see cref="SynthPalette.Colors"/>) objects may have.</summary>
    public IReadOnlyList<string>? Colors { get; init; }

    /// <summary>Shapes drawn (question and distractors); default all of <see cref="SynthPalette.Shapes"/>.</summary>
    public IReadOnlyList<string>? Shapes { get; init; }

    /// <summary>Shapes a question may ask about; default <see cref="SynthPalette.SingleTokenShapes"/>.</summary>
    public IReadOnlyList<string>? QuestionShapes { get; init; }

    /// <summary>
    /// RGB distance below which a colour is not used on a background: white is never drawn on the
    /// light backgrounds, black never on the dark ones.
    /// </summary>
    public double MinContrast { get; init; } = 80;

    /// <summary>TQA examples appended to manifest.jsonl: null = as many as VQA examples, 0 = none.</summary>
    public int? TextQaCount { get; init; }

    public string IdPrefix { get; init; } = "shapes";
    public string TextQaIdPrefix { get; init; } = "tqa";

    internal int ResolvedMinSize => MinObjectSize ?? Math.Max(14, (int)Math.Round(ImageSize / 6.0));

    internal int ResolvedMaxSize => MaxObjectSize ?? Math.Max(ResolvedMinSize, (int)Math.Round(ImageSize * 0.36));
}
