namespace LlavaMech.Analysis;

/// <summary>
/// Collects result tensors and copies them to the host in one transfer per kind (floating, integer): one
/// concatenation on the device, one copy, then managed slices.
/// </summary>
internal sealed class HostTransfer
{
    public readonly record struct Slot(bool Integer, long Offset, long[] Shape)
    {
        public long Count => Shape.Aggregate(1L, (a, b) => a * b);
    }

    private readonly List<Tensor> _floats = new();
    private readonly List<Tensor> _ints = new();
    private long _floatCount, _intCount;
    private double[]? _f;
    private long[]? _i;

    public Slot Add(Tensor t)
    {
        bool integer = !is_floating_point(t);
        var slot = new Slot(integer, integer ? _intCount : _floatCount, t.shape);
        if (integer) { _ints.Add(t.reshape(-1).to(ScalarType.Int64)); _intCount += slot.Count; }
        else { _floats.Add(t.reshape(-1)); _floatCount += slot.Count; }
        return slot;
    }

    public void Run()
    {
        _f = _floats.Count == 0 ? Array.Empty<double>()
            : cat(_floats.Select(t => t.to(_floats[0].dtype)).ToArray(), 0).cpu().to(ScalarType.Float64).data<double>().ToArray();
        _i = _ints.Count == 0 ? Array.Empty<long>() : cat(_ints, 0).cpu().data<long>().ToArray();
    }

    private double[] F => _f ?? throw new InvalidOperationException("Run() first");
    private long[] I => _i ?? throw new InvalidOperationException("Run() first");

    public double[] Doubles(Slot s) => s.Integer ? LongSpan(s).Select(v => (double)v).ToArray() : F.AsSpan((int)s.Offset, (int)s.Count).ToArray();

    public double Double(Slot s) => Doubles(s)[0];

    public double[][] Doubles2(Slot s) => Rows(Doubles(s), s);

    public int[] Ints(Slot s) => s.Integer ? LongSpan(s).Select(v => (int)v).ToArray() : F.AsSpan((int)s.Offset, (int)s.Count).ToArray().Select(v => (int)v).ToArray();

    public int Int(Slot s) => Ints(s)[0];

    public int[][] Ints2(Slot s) => Rows(Ints(s), s);

    /// <summary>A slot's flat values as rows of its first dimension.</summary>
    private static T[][] Rows<T>(T[] flat, Slot s)
    {
        long rows = s.Shape[0], cols = s.Shape.Length > 1 ? s.Count / Math.Max(1, rows) : 1;
        var r = new T[rows][];
        for (long i = 0; i < rows; i++) r[i] = flat.AsSpan((int)(i * cols), (int)cols).ToArray();
        return r;
    }

    private long[] LongSpan(Slot s) => I.AsSpan((int)s.Offset, (int)s.Count).ToArray();
}
