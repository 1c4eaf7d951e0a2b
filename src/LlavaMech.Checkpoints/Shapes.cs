namespace LlavaMech.Checkpoints;

/// <summary>Shape helpers shared by the reader, writer and binder so all messages print shapes alike.</summary>
public static class Shapes
{
    /// <summary>"[602,64]"; "[]" for a scalar.</summary>
    public static string Format(IReadOnlyList<long> shape) => "[" + string.Join(",", shape) + "]";

    /// <summary>Product of the dimensions, or null when it overflows a long (only a hostile header does that).</summary>
    public static long? CheckedNumel(IReadOnlyList<long> shape)
    {
        long n = 1;
        try
        {
            foreach (var d in shape) n = checked(n * d);
        }
        catch (OverflowException)
        {
            return null;
        }
        return n;
    }

    public static bool SameShape(IReadOnlyList<long> a, IReadOnlyList<long> b)
    {
        if (a.Count != b.Count) return false;
        for (int i = 0; i < a.Count; i++)
            if (a[i] != b[i]) return false;
        return true;
    }
}
