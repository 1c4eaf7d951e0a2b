using LlavaMech.Datasets.Manifest;
using LlavaMech.Model;
using LlavaMech.Testing;
using static TorchSharp.torch;

namespace LlavaMech.Training.Tests;

/// <summary>The training inputs: exactly what LoadedModel prepares, plus the labels of the auxiliary losses.</summary>
public sealed class TrainingDataTests
{
    private static readonly IReadOnlyList<ManifestExample> Bundled =
        ManifestReader.Read(Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "manifest.jsonl")).Examples;

    private static readonly Lazy<LoadedModel> Fixture = new(() => LoadedModel.Load(Fixtures.Model("tiny-llava-mha")));

    [Fact]
    public void InputsAndTargetsAreThoseLoadedModelPrepares()
    {
        var m = Fixture.Value;
        var examples = Bundled.Where(e => e.IsVqa).Take(6).Concat(Bundled.Where(e => !e.IsVqa).Take(3)).ToList();
        var data = TrainingData.Encode(examples, m.Tokenizer, m.Prompts, m.ImageProcessor!);
        Assert.Equal(6, data.VqaCount);
        Assert.Equal(3, data.TqaCount);
        var bucket = Assert.Single(data.Vqa);   // the question shapes are one token each: one length
        Assert.Equal(m.Prepare(examples[0].Prompt, examples[0].ImagePath).SeqLen, bucket.Length);
        using var rgb = data.RgbTensor();
        using var scope = NewDisposeScope();
        var batch = data.MakeBatch(bucket, [0, 1, 2, 3, 4, 5], rgb, flip: false, new Random(0), CPU);
        for (int i = 0; i < 6; i++)
        {
            var input = m.Prepare(examples[i].Prompt, examples[i].ImagePath);
            Assert.Equal(input.InputIds, batch.Ids[i].data<long>().ToArray());
            // Bit-exact: the trainer normalises through a table built with the processor's arithmetic.
            Assert.Equal(input.PixelValues!, batch.Pixels![i].contiguous().data<float>().ToArray());
            Assert.Equal(m.Tokenizer.TokenToId("\u2581" + examples[i].Expected), (int)batch.Targets[i].item<long>());
        }
        foreach (var t in data.Tqa)
            for (int i = 0; i < t.Count; i++)
                Assert.Equal(t.Length, t.Ids[i].Length);
    }

    [Fact]
    public void FlippedImagesCarryFlippedPatchLabels()
    {
        var m = Fixture.Value;
        var examples = Bundled.Where(e => e.IsVqa).Take(8).ToList();
        var data = TrainingData.Encode(examples, m.Tokenizer, m.Prompts, m.ImageProcessor!);
        Assert.Equal(6, data.PatchGrid);
        using var rgb = data.RgbTensor();
        using var scope = NewDisposeScope();
        var bucket = data.Vqa[0];
        int[] rows = [0, 1, 2, 3, 4, 5, 6, 7];
        var plain = data.MakeBatch(bucket, rows, rgb, flip: false, new Random(1), CPU);
        // Flip every image: a generator that always says yes.
        var flipped = data.MakeBatch(bucket, rows, rgb, flip: true, new AlwaysOne(), CPU);
        Assert.Equal(plain.Pixels!.flip(3).data<float>().ToArray(), flipped.Pixels!.data<float>().ToArray());
        Assert.Equal(plain.PatchShape!.view(8, 6, 6).flip(2).data<long>().ToArray(), flipped.PatchShape!.view(8, 6, 6).data<long>().ToArray());
        Assert.Equal(plain.PatchColor!.view(8, 6, 6).flip(2).data<long>().ToArray(), flipped.PatchColor!.view(8, 6, 6).data<long>().ToArray());
        Assert.Equal(plain.ObjectPixels!.view(8, 6, 6, 14, 14).flip(2, 4).data<float>().ToArray(), flipped.ObjectPixels!.view(8, 6, 6, 14, 14).data<float>().ToArray());
    }

    [Fact]
    public void PatchLabelsNameTheObjectCoveringThePatch()
    {
        // shapes-00000: one brown triangle in [55, 51, 69, 64) on a light background.
        var e = Bundled.Single(x => x.Id == "shapes-00000");
        var img = Fixture.Value.ImageProcessor!.Preprocess(e.ImagePath!);
        var (shape, color) = TrainingData.PatchLabels(e, img, 14);
        Assert.NotNull(shape);
        int triangle = TrainingData.PatchShapes.ToList().IndexOf("triangle") + 1;
        int brown = TrainingData.PatchColors.ToList().IndexOf("brown") + 1;
        // Rows 3-4 (y 42-69), columns 3-4 (x 42-69) are the only patches the triangle can touch.
        var labelled = Enumerable.Range(0, 36).Where(p => shape![p] != 0).ToList();
        Assert.NotEmpty(labelled);
        Assert.All(labelled, p =>
        {
            Assert.InRange(p / 6, 3, 4);
            Assert.InRange(p % 6, 3, 4);
            Assert.Equal(triangle, shape![p]);
            Assert.Equal(brown, color![p]);
        });
        Assert.Equal(labelled, Enumerable.Range(0, 36).Where(p => color![p] != 0));
    }

    [Fact]
    public void OtherQuestionsAskAboutUniqueQuestionShapesOnly()
    {
        // shapes-00003: square (asked) white, hexagon green, circle brown, diamond blue.
        var e = Bundled.Single(x => x.Id == "shapes-00003");
        Assert.Equal([("circle", "brown")], TrainingData.OtherQuestions(e));
        // shapes-00001: square (asked), two crosses and a hexagon: nothing else to ask.
        Assert.Empty(TrainingData.OtherQuestions(Bundled.Single(x => x.Id == "shapes-00001")));
        // A text question has no objects.
        Assert.Empty(TrainingData.OtherQuestions(Bundled.First(x => !x.IsVqa)));
    }

    [Fact]
    public void AllObjectQuestionsAddTheOtherObjectsAnswers()
    {
        var m = Fixture.Value;
        var e = Bundled.Single(x => x.Id == "shapes-00003");
        var data = TrainingData.Encode([e], m.Tokenizer, m.Prompts, m.ImageProcessor!, allObjectQuestions: true);
        var bucket = Assert.Single(data.Vqa);
        Assert.Equal(2, bucket.Count);
        Assert.Equal([0, 0], bucket.Images);                          // one image, two questions
        Assert.Equal([(long)m.Tokenizer.TokenToId("\u2581white")!, (long)m.Tokenizer.TokenToId("\u2581brown")!], bucket.Targets);
        Assert.Equal(m.Prepare(e.Prompt.Replace("square", "circle"), e.ImagePath).InputIds, bucket.Ids[1]);
    }

    private sealed class AlwaysOne : Random
    {
        public override int Next(int maxValue) => 1;
    }
}
