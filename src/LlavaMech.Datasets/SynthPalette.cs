namespace LlavaMech.Datasets;

public readonly record struct NamedColor(string Name, byte R, byte G, byte B)
{
    public double DistanceTo(byte r, byte g, byte b)
    {
        double dr = R - r, dg = G - g, db = B - b;
        return Math.Sqrt(dr * dr + dg * dg + db * db);
    }
}

public readonly record struct TextQaObject(string Name, string Color);

/// <summary>
/// Words of the synthetic colour world. Every colour and every default question shape is one
/// piece ("▁red", "▁circle") in the tiny fixture tokenizer (tests/fixtures/tiny-llava-mha),
/// so the answer after "... is" is a single next token.
/// </summary>
public static class SynthPalette
{
    /// <summary>Saturated, far-apart RGB values (closest pair orange/yellow, about 92 apart).</summary>
    public static IReadOnlyList<NamedColor> Colors { get; } =
    [
        new("red", 220, 30, 30),
        new("green", 30, 160, 50),
        new("blue", 30, 70, 220),
        new("yellow", 245, 220, 30),
        new("orange", 250, 130, 10),
        new("purple", 140, 40, 190),
        new("pink", 245, 140, 190),
        new("brown", 125, 75, 35),
        new("black", 0, 0, 0),
        new("white", 255, 255, 255),
        new("gray", 128, 128, 128),
    ];

    /// <summary>Every shape the generator can draw.</summary>
    public static IReadOnlyList<string> Shapes { get; } =
        ["circle", "square", "triangle", "star", "diamond", "hexagon", "cross"];

    /// <summary>
    /// Shapes asked about by default: the single-token ones. The others ("star" = ▁s t ar,
    /// "diamond" = 6 pieces, ...) still appear as distractors.
    /// </summary>
    public static IReadOnlyList<string> SingleTokenShapes { get; } = ["circle", "square", "triangle"];

    /// <summary>
    /// Everyday objects with a well-known colour for the text-only questions, 3 to 5 per colour.
    /// apple, banana, sky and fox are single pieces in the tiny tokenizer; the others are split
    /// into subwords (the answer colour is still one piece).
    /// </summary>
    public static IReadOnlyList<TextQaObject> TextQaObjects { get; } =
    [
        new("apple", "red"), new("tomato", "red"), new("cherry", "red"), new("blood", "red"),
        new("grass", "green"), new("leaf", "green"), new("frog", "green"), new("lime", "green"), new("broccoli", "green"),
        new("sky", "blue"), new("ocean", "blue"), new("sea", "blue"), new("jeans", "blue"),
        new("banana", "yellow"), new("lemon", "yellow"), new("sun", "yellow"), new("canary", "yellow"),
        new("fox", "orange"), new("carrot", "orange"), new("pumpkin", "orange"), new("tangerine", "orange"),
        new("plum", "purple"), new("lavender", "purple"), new("eggplant", "purple"), new("violet", "purple"),
        new("flamingo", "pink"), new("pig", "pink"), new("bubblegum", "pink"),
        new("chocolate", "brown"), new("coffee", "brown"), new("cinnamon", "brown"), new("soil", "brown"),
        new("coal", "black"), new("crow", "black"), new("tar", "black"), new("raven", "black"),
        new("snow", "white"), new("milk", "white"), new("salt", "white"), new("swan", "white"),
        new("elephant", "gray"), new("ash", "gray"), new("concrete", "gray"),
    ];

    public static NamedColor Color(string name) =>
        Colors.FirstOrDefault(c => c.Name == name) is { Name: not null } c
            ? c
            : throw new ArgumentException($"Unknown colour '{name}'. Known: {string.Join(", ", Colors.Select(x => x.Name))}.");
}
