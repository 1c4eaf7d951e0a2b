using LlavaMech.Analysis;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Model;
using LlavaMech.Testing;

namespace LlavaMech.Explanation.Tests;

/// <summary>
/// <c>findings</c>' per-object reading of the top head (<see cref="ObjectLook"/>) on the toy model and the bundled scenes,
/// and the binding-error rule (<see cref="ExampleFindings.NamedObject"/>).
/// </summary>
public class ObjectLookTests
{
    [Fact]
    public void The_asked_objects_look_is_the_top_heads_object_share_and_every_share_is_part_of_one_whole()
    {
        var dir = Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini");
        var examples = ManifestReader.Read(Path.Combine(dir, "manifest.jsonl")).Examples.Where(e => e.IsVqa).Take(12).ToList();
        using var model = LoadedModel.Load(Path.Combine(dir, "toy-llava"));
        using var analyzer = new ExampleAnalyzer(model);
        int multi = 0;
        foreach (var ex in examples)
        {
            var scene = SceneObjects.Of(ex);
            Assert.NotEmpty(scene);
            Assert.Equal(ex.Expected, scene[0].Color);
            int expected = model.Tokenizer.TokenToId("\u2581" + ex.Expected)!.Value;
            var f = MechanismFindings.Analyze(analyzer, ex.Id, model.Prepare(ex.Prompt, ex.ImagePath), ex.ObjectBox!, ex.Expected, expected, expected,
                scene.Select(o => (o.Shape, o.Color, o.Box)).ToArray());
            var looks = f.Objects!;
            Assert.Equal(scene.Count, looks.Count);
            Assert.Equal(f.TopHeadObjectShare, looks[0].AttentionShare, 9);
            Assert.Equal(f.ObjectAreaShare, looks[0].AreaShare, 9);
            // Shares of one whole (objects a couple of pixels apart may share a boundary patch, so they need not add up to 1).
            Assert.All(looks, l =>
            {
                Assert.InRange(l.AttentionShare, 0, 1 + 1e-9);
                Assert.InRange(l.LogIncreaseShare, 0, 1 + 1e-6);
                Assert.InRange(l.AreaShare, 1e-9, 1);
            });
            Assert.Equal(f.Correct == true, f.Answer == ex.Expected);
            if (f.Correct == true) Assert.Null(f.NamedObject);
            multi += looks.Count > 1 ? 1 : 0;
        }
        Assert.True(multi >= 3, $"{multi} scenes with more than one object");
    }

    [Fact]
    public void A_binding_error_is_a_wrong_answer_that_is_another_objects_colour()
    {
        var looks = new[] { new ObjectLook("square", "yellow", 0.2, 0.1, 0.1), new ObjectLook("triangle", "red", 0.7, 0.8, 0.1) };
        ExampleFindings F(string answer, bool correct) => new("x", 1, "yellow", correct, 0.5, [], [], [], new HeadScore(0, 0, 0.1),
            0, 0, 0, 0, 0.2, 0.1, answer, looks);
        Assert.Equal("triangle", F("red", false).NamedObject!.Shape);
        Assert.Null(F("orange", false).NamedObject);   // no object has that colour
        Assert.Null(F("yellow", true).NamedObject);
        Assert.Null((F("red", false) with { Objects = null }).NamedObject);
    }
}
