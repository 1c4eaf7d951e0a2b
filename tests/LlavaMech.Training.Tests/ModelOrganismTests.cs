using LlavaMech.Datasets;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Model;
using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Training.Tests;

/// <summary>
/// The shipped toy LLaVA as a model organism: it must answer scenes it was not drawn for. Measured on a held-out set of
/// the training generator (SynthColors, seed <see cref="ToyTrainingOptions.HeldOutSeed"/>) and on a set drawn by
/// <see cref="IndependentScenes"/>, a generator written apart from it. The target is at least 97% overall and for every
/// colour and shape asked, on each, and the shipped checkpoint meets it. The scores (per colour and per shape with
/// their 95% Wilson intervals, confusion, wrong answers with the object whose colour they named) go to the test output; with LLAVAMECH_ORGANISM_REPORT=DIR the two sets (manifest.jsonl and
/// images, for findings and score-methods), the scores and the confusion figures are kept there (the README's tables).
/// </summary>
public sealed class ModelOrganismTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>
    /// 80 examples per colour and asked shape: 2,640 a set, 240 a colour. A colour cell of 60 cannot tell 97% from 99% (its
    /// 95% Wilson interval at 58/60 is 88.6-99.1%; a model right 99% of the time fails one of 22 such cells more often than
    /// not); at 240 the interval is about +-2 points.
    /// </summary>
    private const int PerSet = 2640;

    /// <summary>
    /// The independent set's seed: 11, a set nobody had looked at when the shipped checkpoint was chosen. The recipe was
    /// changed after seed 9's errors (black objects on a dark slate background read as brown) and the checkpoint chosen
    /// between two candidates on seed 10 (the other read 23% of CSS-pink objects as white).
    /// </summary>
    private const int IndependentSeed = 11;

    /// <summary>What a model organism must reach on each set, overall and for every colour and shape asked (issue 17).</summary>
    private const double Target = 0.97;

    /// <summary>
    /// What the shipped checkpoint measures (2,640 a set): 99.5% (2,626) on the independent generator, every colour 98.3% or
    /// more; 99.5% (2,628) on the training generator's held-out set, every colour 98.8% or more; binding errors 0.2% and
    /// 0.5% of the examples (the previous checkpoint: 98.9% and 99.2%, black 94.2% on the independent set; the one before,
    /// trained on classic scenes only: 87.1% and 95.8% on the sets of 660). The floors are the target; binding errors at
    /// most 1.5%.
    /// </summary>
    private const double IndependentFloor = Target, HeldOutFloor = Target, BindingErrorCeiling = 0.015;

    private readonly string _tmp = Directory.CreateTempSubdirectory("llavamech-organism-").FullName;

    private static string ShippedModel => Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "toy-llava");

    /// <summary>LLAVAMECH_ORGANISM_REPORT: where the two sets (manifests and images), the scores and the figures are kept.</summary>
    private static string? ReportDir => Environment.GetEnvironmentVariable("LLAVAMECH_ORGANISM_REPORT") is { Length: > 0 } d ? Path.GetFullPath(d) : null;

    public void Dispose()
    {
        try { Directory.Delete(_tmp, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void Shipped_model_on_an_independent_generators_scenes_keeps_its_measured_accuracy()
    {
        var score = Measure(IndependentSet(), "independent generator (SkiaSharp anti-aliased, CSS colours, other backgrounds and layouts)", "independent");
        Assert.True(score.Accuracy >= IndependentFloor, $"{score.Correct}/{score.Total}");
        Assert.True(score.BindingErrorRate <= BindingErrorCeiling, $"binding errors {score.BindingErrors} of {score.Total}");
    }

    [Fact]
    public void Shipped_model_on_the_training_generators_held_out_scenes_keeps_its_measured_accuracy()
    {
        var score = Measure(HeldOutSet(), $"training generator, held-out seed {new ToyTrainingOptions().HeldOutSeed}", "heldout");
        Assert.True(score.Accuracy >= HeldOutFloor, $"{score.Correct}/{score.Total}");
        Assert.True(score.BindingErrorRate <= BindingErrorCeiling, $"binding errors {score.BindingErrors} of {score.Total}");
    }

    [Fact]
    public void The_organism_answers_97_percent_of_both_generators_scenes_for_every_colour_and_shape()
    {
        foreach (var (examples, name) in new[] { (IndependentSet(), "independent"), (HeldOutSet(), "heldout") })
        {
            var score = Measure(examples, name, name);
            Assert.True(score.Accuracy >= Target, $"{name}: {score.Correct}/{score.Total}");
            foreach (var g in score.PerColour.Concat(score.PerShape))
                Assert.True(g.Accuracy >= Target, $"{name}: {g.Group} {g.Correct}/{g.Total}");
        }
    }

    private IReadOnlyList<ManifestExample> IndependentSet() => IndependentScenes.Write(Path.Combine(ReportDir ?? _tmp, "independent"), PerSet, IndependentSeed);

    private IReadOnlyList<ManifestExample> HeldOutSet() => SynthColors.Generate(Path.Combine(ReportDir ?? _tmp, "heldout"), PerSet,
        new ToyTrainingOptions().HeldOutSeed, new SynthOptions { TextQaCount = 0, IdPrefix = "heldout" }).Examples;

    /// <summary>Scores the shipped model on <paramref name="examples"/>; the report goes to the test output (and LLAVAMECH_ORGANISM_REPORT).</summary>
    private ColourWorldScore Measure(IReadOnlyList<ManifestExample> examples, string title, string name)
    {
        using var model = LoadedModel.Load(ShippedModel);
        var result = ToyTrainer.Evaluate(model, examples);
        var score = ColourWorldScore.From(examples, result, SynthPalette.Colors.Select(c => c.Name).ToArray());
        string report = score.Markdown($"toy-llava on the {title}");
        output.WriteLine(report);
        if (ReportDir is { } dir)
        {
            File.WriteAllText(Path.Combine(dir, $"{name}.md"), report);
            score.WriteConfusionFigure(Path.Combine(dir, $"confusion_{name}.png"), $"toy-llava, {name}: expected vs answered colour");
        }
        Assert.Equal(examples.Count, score.Total);
        return score;
    }

    [Fact]
    public void The_independent_generator_draws_balanced_exact_questions_unlike_the_training_palette()
    {
        var counts = new Dictionary<(string, string), int>();
        for (int i = 0; i < 330; i++)
        {
            var (items, bg) = IndependentScenes.Scene(4, i);
            Assert.InRange(items.Count, 1, 3);
            // The asked shape is unique, so the answer is exact; boxes are 20-40% of the side and never overlap.
            Assert.Single(items, o => o.Shape == items[0].Shape);
            foreach (var o in items)
            {
                Assert.InRange(o.Box[2] - o.Box[0], (int)(0.2 * IndependentScenes.Side) - 1, (int)(0.4 * IndependentScenes.Side) + 1);
                Assert.All(items.Where(p => p != o), p => Assert.True(o.Box[2] <= p.Box[0] || p.Box[2] <= o.Box[0] || o.Box[3] <= p.Box[1] || p.Box[3] <= o.Box[1]));
            }
            // Backgrounds are neither the training generator's near-greys nor a colour word's value.
            Assert.True(Math.Max(bg.Red, Math.Max(bg.Green, bg.Blue)) - Math.Min(bg.Red, Math.Min(bg.Green, bg.Blue)) >= 20, $"near-grey background {bg}");
            var key = (items[0].Color, items[0].Shape);
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }
        Assert.Equal(33, counts.Count);
        Assert.All(counts.Values, n => Assert.Equal(10, n));
        // Most colour words have other RGB values than the training palette's.
        int differ = IndependentScenes.Colors.Count(c => SynthPalette.Color(c.Name) is var t && (t.R, t.G, t.B) != (c.Rgb.Red, c.Rgb.Green, c.Rgb.Blue));
        Assert.True(differ >= 8, $"{differ} colours differ");
    }

    [Fact]
    public void A_wrong_answer_naming_another_objects_colour_is_a_binding_error()
    {
        ManifestExample Example(string id, string objectsJson) => new(id, ManifestTasks.Vqa, "/x.png", "x.png",
            "USER: <image>\nWhat is the color of the square?\nASSISTANT: The color of the square is", "yellow", null, $"{{\"objects\": {objectsJson}}}", 1);
        var examples = new[]
        {
            Example("a", """[{"shape":"square","color":"yellow","box":[0,0,1,1]},{"shape":"triangle","color":"red","box":[2,2,3,3]}]"""),
            Example("b", """[{"shape":"square","color":"yellow","box":[0,0,1,1]}]"""),
            Example("c", """[{"shape":"square","color":"yellow","box":[0,0,1,1]}]"""),
        };
        var result = new EvaluationResult(
        [
            new Prediction("a", ManifestTasks.Vqa, "yellow", "red", false),
            new Prediction("b", ManifestTasks.Vqa, "yellow", "orange", false),
            new Prediction("c", ManifestTasks.Vqa, "yellow", "yellow", true),
        ]);
        var score = ColourWorldScore.From(examples, result, ["red", "yellow", "orange"]);
        Assert.Equal((3, 1), (score.Total, score.Correct));
        Assert.Equal(1, score.BindingErrors);
        Assert.Equal("triangle", score.Wrong.Single(w => w.Id == "a").NamedObject);
        Assert.Null(score.Wrong.Single(w => w.Id == "b").NamedObject);
        Assert.Equal(1.0 / 3, score.BindingErrorRate, 12);
        // Row yellow: one answered red, one orange, one yellow.
        Assert.Equal([1, 1, 1, 0], Enumerable.Range(0, 4).Select(c => score.Confusion[1, c]).ToArray());
        Assert.Equal("yellow", score.PerColour.Single().Group);
        Assert.Contains("the triangle beside it", score.Markdown("t"));
        string png = score.WriteConfusionFigure(Path.Combine(_tmp, "confusion.png"), "t");
        Assert.True(new FileInfo(png).Length > 1000);
    }
}
