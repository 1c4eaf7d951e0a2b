using LlavaMech.Datasets.Manifest;
using LlavaMech.Runtime.Stats;
using System.Text.Json.Nodes;
using LlavaMech.Runtime;
using LlavaMech.Storage;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace LlavaMech.Pipeline.Tests;

public class DeviceRunnerTests
{
    private static ManifestExample Work(JsonObject o, string dir, string id) => new(
        id, (string)o["task"]!, o["image"] is { } img ? Path.Combine(dir, (string)img!) : null, (string?)o["image"], (string)o["prompt"]!,
        (string?)o["expected"], null, "{}", 1) { RawLine = o.ToJsonString() };

    [Fact]
    public async Task Runner_rows_equal_the_single_process_statistics_and_bad_inputs_become_rejects()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Path, perTask: 2, copies: 1);
        var sources = data.Sources;
        var reference = Reference.Analyze(TestData.TinyModel,
            sources.Select(s => ((string)s["prompt"]!, s["image"] is { } i ? Path.Combine(tmp.Path, (string)i!) : null)));

        await using var runner = new DeviceRunner(new DeviceRunnerOptions { Device = "cpu", Threads = 2, Capacity = 2 });
        await runner.StartAsync(default);
        var model = new ModelSpec(TestData.TinyModel);
        var settings = new AnalysisSettings();
        var works = sources.Select((s, i) => Work(s, tmp.Path, $"e{i}")).ToList();
        works.Add(works[0] with { Id = "missing", ImagePath = Path.Combine(tmp.Path, "images", "gone.png"), ImageRelative = "images/gone.png", Line = 7, RawLine = "raw7" });
        var outcomes = await Task.WhenAll(works.Select(w => runner.AnalyzeAsync(model, w, settings)));

        var missing = outcomes[^1];
        Assert.True(missing.Rejected);
        Assert.Contains("gone.png", missing.RejectReason);

        for (int i = 0; i < sources.Count; i++)
        {
            var rows = outcomes[i].Rows!;
            var s = reference[i];
            Assert.Equal(s.TargetId, rows.Example.TargetId);
            Assert.Equal(Math.Exp(s.TargetLogProb), rows.Example.TargetProb, 1e-9);
            int L = s.LayerAttnIncrease.Length;
            Assert.Equal(2 * L, rows.Of<LayerStatRow>().Count);
            for (int l = 0; l < L; l++)
            {
                Assert.Equal(s.LayerAttnIncrease[l], rows.Of<LayerStatRow>().Single(r => r.Layer == l && r.Component == Components.Attention).LogProbIncrease, 1e-9);
                Assert.Equal(s.LayerFfnIncrease[l], rows.Of<LayerStatRow>().Single(r => r.Layer == l && r.Component == Components.Ffn).LogProbIncrease, 1e-9);
            }
            foreach (var h in rows.Of<HeadStatRow>())
                Assert.Equal(s.HeadIncrease[h.Layer][h.Head], h.LogProbIncrease, 1e-9);
            bool vqa = rows.Example.Task == "vqa";
            Assert.Equal(vqa, rows.Of<HeadStatRow>().All(h => h.AttnToImage is not null));
            // position rows: every position of each top head; attention weights of a head's last row sum to 1
            foreach (var g in rows.Of<PositionStatRow>().GroupBy(p => (p.Layer, p.Head)))
            {
                var scores = s.PositionsOf(g.Key.Layer, g.Key.Head)!;
                Assert.Equal(scores.Length, g.Count());
                foreach (var p in g) Assert.Equal(scores[p.Position], p.LogProbIncrease, 1e-9);
                Assert.Equal(1.0, g.Sum(p => p.AttnWeight), 1e-5);
                Assert.Equal(vqa ? 36 : 0, g.Count(p => p.IsImage));
                if (vqa) Assert.Equal(Enumerable.Range(0, 36).Select(k => (k / 6, k % 6)), g.Where(p => p.IsImage).Select(p => (p.PatchRow!.Value, p.PatchCol!.Value)));
            }
            Assert.Equal(s.TopHeads.Select(h => (h.Layer, h.Head)), rows.Of<PositionStatRow>().Select(p => (p.Layer, p.Head)).Distinct());
            Assert.Equal(20, rows.Of<NeuronStatRow>().Count);
            foreach (var n in rows.Of<NeuronStatRow>()) Assert.Equal(s.Neurons!.Scores[n.Layer][n.Neuron], n.LogProbIncrease, 1e-9);
            Assert.True(rows.Of<NeuronStatRow>().Zip(rows.Of<NeuronStatRow>().Skip(1)).All(p => p.First.LogProbIncrease >= p.Second.LogProbIncrease));
            Assert.Contains(rows.Of<NeuronStatRow>(), n => n.Coefficient != 0);
            Assert.Equal(vqa ? 36 * 5 : 0, rows.Of<LogitLensRow>().Count);
            if (vqa)
                foreach (var r in rows.Of<LogitLensRow>())
                    Assert.Equal(s.Image!.VisualTokenLens!.TopIds[Array.IndexOf(s.Image.ImagePositions, r.Position)][r.Rank], r.TokenId);
        }
        var stats = runner.Stats;
        Assert.Equal(works.Count, stats.Examples);
        Assert.Equal(1, stats.Rejected);
        Assert.InRange(stats.ModelLoads, 1, 2);   // one warm model per thread, loaded once
    }

    [Fact]
    public void Fingerprint_is_stable_and_sees_weight_bytes()
    {
        using var tmp = new TempDir();
        foreach (var f in Directory.GetFiles(TestData.TinyModel)) File.Copy(f, Path.Combine(tmp.Path, Path.GetFileName(f)));
        foreach (var f in Directory.GetFiles(tmp.Path)) File.SetAttributes(f, FileAttributes.Normal);
        string a = ModelFingerprint.Compute(TestData.TinyModel), b = ModelFingerprint.Compute(tmp.Path);
        Assert.Equal(a, b);
        Assert.Matches("^[0-9a-f]{64}$", a);
        // Same header, one weight byte changed at the start of the data section: another model.
        string st = Path.Combine(tmp.Path, "model.safetensors");
        var bytes = File.ReadAllBytes(st);
        long dataStart = 8 + BitConverter.ToInt64(bytes, 0);
        bytes[dataStart] ^= 0x40;
        File.WriteAllBytes(st, bytes);
        Assert.NotEqual(a, ModelFingerprint.Compute(tmp.Path));
    }
}
