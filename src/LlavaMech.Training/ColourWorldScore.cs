using System.Globalization;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Reports;
using LlavaMech.Storage;

namespace LlavaMech.Training;

/// <summary>One wrong VQA answer: what was asked and answered, and whose colour the answer is.</summary>
/// <param name="NamedObject">the shape of another object in the scene that has the answered colour (a binding error), or
/// null when no object in the scene has it.</param>
public sealed record WrongAnswer(string Id, string Shape, string Expected, string Predicted, string? NamedObject, string? ImagePath);

/// <summary>Accuracy of one group of examples (a colour, a shape).</summary>
public sealed record GroupAccuracy(string Group, int Total, int Correct)
{
    public double Accuracy => Total == 0 ? double.NaN : (double)Correct / Total;
}

/// <summary>
/// How the toy model answers the colour world's VQA questions, beyond one accuracy: per colour and per shape asked, the
/// confusion matrix of expected against answered colours, and every wrong answer with the object whose colour it named.
/// An answer that is the colour of <b>another object in the scene</b> is a binding error: the model read the wrong
/// object. The scenes' objects come from the manifest's <c>metadata.objects</c> ([{shape, color, box}], the asked one
/// first), as both scene generators write them.
/// </summary>
public sealed record ColourWorldScore(int Total, int Correct, IReadOnlyList<GroupAccuracy> PerColour, IReadOnlyList<GroupAccuracy> PerShape,
    IReadOnlyList<string> Labels, int[,] Confusion, IReadOnlyList<WrongAnswer> Wrong)
{
    /// <summary>The answer word of a prediction outside the colour words (the confusion matrix' last column).</summary>
    public const string OtherLabel = "(other)";

    public double Accuracy => Total == 0 ? double.NaN : (double)Correct / Total;

    /// <summary>Wrong answers that name another object's colour.</summary>
    public int BindingErrors => Wrong.Count(w => w.NamedObject is not null);

    /// <summary>Binding errors over all examples scored.</summary>
    public double BindingErrorRate => Total == 0 ? double.NaN : (double)BindingErrors / Total;

    /// <summary>Scores the VQA predictions of <paramref name="result"/> against their examples (matched by id).</summary>
    public static ColourWorldScore From(IReadOnlyList<ManifestExample> examples, EvaluationResult result, IReadOnlyList<string> colours)
    {
        var byId = examples.ToDictionary(e => e.Id);
        var vqa = result.Predictions.Where(p => p.Task == ManifestTasks.Vqa).ToList();
        var index = colours.Select((c, i) => (c, i)).ToDictionary(x => x.c, x => x.i);
        var labels = colours.Append(OtherLabel).ToArray();
        var confusion = new int[colours.Count, labels.Length];
        var wrong = new List<WrongAnswer>();
        var shapes = new Dictionary<string, (int N, int Ok)>();
        foreach (var p in vqa)
        {
            var e = byId[p.Id];
            var objects = SceneObjects.Of(e);
            string shape = objects.Count > 0 ? objects[0].Shape : "?";
            int row = index.GetValueOrDefault(p.Expected, -1);
            int col = index.GetValueOrDefault(p.Predicted, -1);
            if (row >= 0) confusion[row, col >= 0 ? col : labels.Length - 1]++;
            var (n, ok) = shapes.GetValueOrDefault(shape);
            shapes[shape] = (n + 1, ok + (p.IsCorrect ? 1 : 0));
            if (!p.IsCorrect)
                wrong.Add(new WrongAnswer(p.Id, shape, p.Expected, p.Predicted, objects.Skip(1).FirstOrDefault(o => o.Color == p.Predicted)?.Shape, e.ImagePath));
        }
        var perColour = colours.Select(c => new GroupAccuracy(c, vqa.Count(p => p.Expected == c), vqa.Count(p => p.Expected == c && p.IsCorrect)))
            .Where(g => g.Total > 0).ToArray();
        var perShape = shapes.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new GroupAccuracy(kv.Key, kv.Value.N, kv.Value.Ok)).ToArray();
        return new ColourWorldScore(vqa.Count, vqa.Count(p => p.IsCorrect), perColour, perShape, labels, confusion, wrong);
    }

    /// <summary>The scores as Markdown: overall, per colour, per shape, the confusion matrix and the wrong answers.</summary>
    public string Markdown(string title)
    {
        static string Pct(double v) => double.IsNaN(v) ? "n/a" : (100 * v).ToString("0.0", CultureInfo.InvariantCulture) + "%";
        var w = new StringWriter();
        w.WriteLine($"## {title}");
        w.WriteLine();
        // Each accuracy with its 95% Wilson interval: a cell of 60 examples cannot tell 97% from 99%, one of 240 can.
        string Ci(int correct, int total)
        {
            var (lo, hi) = Intervals.Wilson(correct, total);
            return $"{Pct(lo)}-{Pct(hi)}";
        }
        w.WriteLine($"{Correct}/{Total} correct ({Pct(Accuracy)}, 95% CI {Ci(Correct, Total)}); binding errors (the answer is another object's colour): " +
                    $"{BindingErrors} of {Wrong.Count} wrong answers, {Pct(BindingErrorRate)} of all examples.");
        w.WriteLine();
        w.WriteLine(MarkdownTable.Render(["colour", "examples", "correct", "accuracy", "95% CI"],
            PerColour.Select(g => (IReadOnlyList<string>)[g.Group, Num(g.Total), Num(g.Correct), Pct(g.Accuracy), Ci(g.Correct, g.Total)])));
        w.WriteLine();
        w.WriteLine(MarkdownTable.Render(["shape asked", "examples", "correct", "accuracy", "95% CI"],
            PerShape.Select(g => (IReadOnlyList<string>)[g.Group, Num(g.Total), Num(g.Correct), Pct(g.Accuracy), Ci(g.Correct, g.Total)])));
        w.WriteLine();
        w.WriteLine("Confusion (rows: expected colour, columns: answered):");
        w.WriteLine();
        w.WriteLine(MarkdownTable.Render(["expected", .. Labels],
            Enumerable.Range(0, Confusion.GetLength(0)).Select(r => (IReadOnlyList<string>)
                [Labels[r], .. Enumerable.Range(0, Labels.Count).Select(c => Num(Confusion[r, c]))])));
        if (Wrong.Count > 0)
        {
            w.WriteLine();
            w.WriteLine(MarkdownTable.Render(["example", "asked", "expected", "answered", "colour of"],
                Wrong.Select(x => (IReadOnlyList<string>)[x.Id, x.Shape, x.Expected, x.Predicted, x.NamedObject is { } o ? $"the {o} beside it" : "no object in the scene"])));
        }
        return w.ToString();
    }

    /// <summary>The confusion matrix as a PNG: share of each expected colour's examples per answer, with its colour bar.</summary>
    public string WriteConfusionFigure(string path, string title)
    {
        int rows = Confusion.GetLength(0), cols = Labels.Count;
        var share = new double[rows, cols];
        for (int r = 0; r < rows; r++)
        {
            double n = Enumerable.Range(0, cols).Sum(c => Confusion[r, c]);
            for (int c = 0; c < cols; c++) share[r, c] = n == 0 ? double.NaN : Confusion[r, c] / n;
        }
        return MatrixFigure.Write(path, share, Labels.Take(rows).ToArray(), Labels.ToArray(), title,
            "expected colour", "answered colour", "share of the expected colour's examples");
    }

    private static string Num(int v) => v.ToString(CultureInfo.InvariantCulture);
}
