using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Analysis.Tests;

internal static class Check
{
    public const double Tol = 1e-3;

    public static double[] D(Tensor t) => t.detach().cpu().to(ScalarType.Float64).contiguous().data<double>().ToArray();
    public static long[] I(Tensor t) => t.detach().cpu().to(ScalarType.Int64).contiguous().data<long>().ToArray();

    /// <summary>Absolute tolerance, relative for large values (docs/METHOD.md, "Golden files": 1e-3 absolute, relative 1e-3 for large values).</summary>
    /// <summary>Where set, every comparison reports its worst error (the tests' output).</summary>
    [ThreadStatic] public static Action<string>? Log;

    public static void Close(IReadOnlyList<double> expected, IReadOnlyList<double> actual, string what, double tol = Tol)
    {
        Assert.True(expected.Count == actual.Count, $"{what}: {actual.Count} values, expected {expected.Count}");
        double worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Count; i++)
        {
            double err = Math.Abs(expected[i] - actual[i]) / Math.Max(1.0, Math.Abs(expected[i]));
            if (!(err <= worst)) { worst = err; at = i; }
        }
        try { Log?.Invoke($"{what}: max error {worst:G3} over {expected.Count}"); } catch (InvalidOperationException) { Log = null; }
        Assert.True(worst <= tol, $"{what}: max error {worst:G4} at {at} (expected {(at >= 0 ? expected[at] : 0):G6}, got {(at >= 0 ? actual[at] : 0):G6}), tolerance {tol:G3}");
    }

    public static void CloseT(Tensor expected, IReadOnlyList<double> actual, string what, double tol = Tol) => Close(D(expected), actual, what, tol);

    public static void CloseTT(Tensor expected, Tensor actual, string what, double tol = Tol) => Close(D(expected), D(actual), what, tol);

    public static double[] Flat(double[][] a) => a.SelectMany(r => r).ToArray();
}
