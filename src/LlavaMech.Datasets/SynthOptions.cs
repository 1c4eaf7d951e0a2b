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

    /// <summary>
    /// Null (the default, which made datasets/shapes-colors-mini): flat near-grey backgrounds, the palette's exact
    /// colours, hard edges. Set: scenes vary in everything that does not change the answer (<see cref="SynthVariation"/>).
    /// </summary>
    public SynthVariation? Variation { get; init; }

    public string IdPrefix { get; init; } = "shapes";
    public string TextQaIdPrefix { get; init; } = "tqa";

    internal int ResolvedMinSize => MinObjectSize ?? Math.Max(14, (int)Math.Round(ImageSize / 6.0));

    internal int ResolvedMaxSize => MaxObjectSize ?? Math.Max(ResolvedMinSize, (int)Math.Round(ImageSize * 0.36));
}

/// <summary>
/// What varies in a scene without changing its answer, for training a model that answers by the asked object and not by
/// the look of one generator: background colour and texture, each object's shade within its colour's range, object size,
/// hard or anti-aliased edges, drawing at a higher resolution and scaling down, triangle proportions, and distractors of
/// the asked object's colour (and, of its shape and colour together, so the answer stays exact).
/// </summary>
/// <param name="GreyBackgroundShare">scenes on a near-grey background (the classic look); the rest get a colour background.</param>
/// <param name="TexturedShare">colour backgrounds that are textured (noise, stripes or a gradient) rather than flat.</param>
/// <param name="ShadeJitter">largest per-channel change of an object's shade; a shade is kept only when it stays nearer its
/// own colour than any other palette colour by <paramref name="ShadeMargin"/>.</param>
/// <param name="ExactShadeShare">objects drawn in the palette's exact colour.</param>
/// <param name="TintShare">of the other objects, those drawn in a tint or shade of their colour (mixed 15-65% toward white or
/// black, then jittered by a quarter of <paramref name="ShadeJitter"/>; the same margin applies).</param>
/// <param name="AntialiasShare">scenes drawn with anti-aliased edges.</param>
/// <param name="DownscaledShare">scenes drawn at twice the size and scaled down (soft edges, as a resized photo has).</param>
/// <param name="SameColourDistractorShare">distractors in the asked object's colour.</param>
/// <param name="TwinDistractorShare">distractors that repeat the asked object's shape and colour (the answer is the same for both).</param>
/// <param name="MinObjectShare">smallest object side as a share of the image side; <paramref name="MaxObjectShare"/> the largest.</param>
/// <param name="MinContrast">smallest RGB distance between a background and any object on it.</param>
/// <param name="NearContrastShare">colour backgrounds drawn near the asked colour's contrast limit (RGB distance
/// <paramref name="MinContrast"/> to <paramref name="MinContrast"/> + <paramref name="NearContrastBand"/>: black on dark
/// slate or navy, white on pastels, green on dark teal), the scenes where the asked object is hardest to tell from what
/// surrounds it; the rest are drawn uniformly from the colours far enough from it, where such scenes are rare.</param>
public sealed record SynthVariation(
    double GreyBackgroundShare = 0.35, double TexturedShare = 0.4, int ShadeJitter = 70, double ShadeMargin = 20, double ExactShadeShare = 0.25,
    double AntialiasShare = 0.5, double DownscaledShare = 0.3, double SameColourDistractorShare = 0.2, double TwinDistractorShare = 0.08,
    double MinObjectShare = 0.15, double MaxObjectShare = 0.48, double MinContrast = 75, double TintShare = 0.5,
    double NearContrastShare = 0.3, double NearContrastBand = 60);
