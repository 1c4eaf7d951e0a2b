namespace LlavaMech.Datasets;

/// <summary>
/// SplitMix64. Our own generator rather than System.Random so generated datasets stay
/// byte-identical across .NET versions; streams are keyed by (seed, purpose, index) so example i
/// does not depend on how many examples are generated.
/// </summary>
internal sealed class DeterministicRandom
{
    private ulong _state;

    private DeterministicRandom(ulong state) => _state = state;

    public static DeterministicRandom For(int seed, ulong purpose, long index) =>
        new(Mix(Mix((ulong)(uint)seed ^ (purpose * 0xD1B54A32D192ED03UL)) ^ (ulong)index));

    public ulong NextULong()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        return Finalise(z);
    }

    /// <summary>Uniform in [0, n); modulo bias is below 2^-40 for the small n used here.</summary>
    public int Next(int n)
    {
        if (n <= 0)
            throw new ArgumentOutOfRangeException(nameof(n));
        return (int)(NextULong() % (ulong)n);
    }

    /// <summary>Uniform in [min, maxInclusive].</summary>
    public int NextInclusive(int min, int maxInclusive) => min + Next(maxInclusive - min + 1);

    public bool NextBool() => (NextULong() & 1) == 1;

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));

    public T Pick<T>(IReadOnlyList<T> items) => items[Next(items.Count)];

    public void Shuffle<T>(IList<T> list)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }

    private static ulong Mix(ulong x) => Finalise(x + 0x9E3779B97F4A7C15UL);

    private static ulong Finalise(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
