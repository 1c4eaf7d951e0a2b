namespace LlavaMech.Hooks;

/// <summary>
/// Which sequence positions a capture keeps. For <c>hook_pattern</c> these are query rows, so a
/// selection other than <see cref="All"/> also spares the model computing the full T x T pattern.
/// </summary>
public sealed record PositionSelector
{
    private PositionSelector(string kind, int[]? positions) { Kind = kind; Positions = positions; }

    /// <summary>"all", "last" or "explicit".</summary>
    public string Kind { get; }

    /// <summary>Explicit positions, ascending (negative counts from the end), or null.</summary>
    public int[]? Positions { get; }

    public static PositionSelector All { get; } = new("all", null);
    public static PositionSelector Last { get; } = new("last", null);

    public static PositionSelector At(IEnumerable<int> positions)
    {
        var p = positions.ToArray();
        if (p.Length == 0) throw new ArgumentException("a position selection needs at least one position", nameof(positions));
        return new("explicit", p);
    }

    /// <summary>Resolves to concrete indices for a sequence of length <paramref name="t"/>; null means every position.</summary>
    public long[]? Resolve(int t)
    {
        switch (Kind)
        {
            case "all": return null;
            case "last": return [t - 1];
            default:
                var r = new long[Positions!.Length];
                for (int i = 0; i < r.Length; i++)
                {
                    int p = Positions[i] < 0 ? t + Positions[i] : Positions[i];
                    if (p < 0 || p >= t) throw new ArgumentOutOfRangeException(nameof(t), $"position {Positions[i]} is outside a sequence of {t}");
                    r[i] = p;
                }
                return r;
        }
    }

    public override string ToString() => Kind == "explicit" ? $"[{string.Join(",", Positions!)}]" : Kind;
}
