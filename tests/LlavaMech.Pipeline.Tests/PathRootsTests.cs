using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// A silo's path roots: a silo process with roots for models, manifests, image roots and outputs, and real
/// <c>submit</c> processes whose jobs name paths inside them, outside them, and inside them through a symbolic link
/// that leads out. Refused jobs fail at submit with the path, where it leads and the roots, and leave no job behind.
/// </summary>
public class PathRootsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_silo_refuses_jobs_whose_paths_leave_its_roots_links_followed()
    {
        using var tmp = new TempDir();
        string root = tmp.Sub("allowed");
        string models = Path.Combine(root, "models"), data = Path.Combine(root, "data"), outs = Path.Combine(root, "out");
        Directory.CreateDirectory(models);
        Directory.CreateDirectory(outs);
        // A model copied inside the model root, and a link inside it that leads to the fixtures (outside).
        string model = Path.Combine(models, "tiny");
        Directory.CreateDirectory(model);
        foreach (var f in Directory.GetFiles(TestData.TinyModel)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        string sneaky = Path.Combine(models, "sneaky");
        Directory.CreateSymbolicLink(sneaky, TestData.TinyModel);
        var inside = TestData.Build(data, perTask: 2, copies: 1);
        var outside = TestData.Build(tmp.Sub("elsewhere"), perTask: 2, copies: 1);

        string clusterId = "roots" + Guid.NewGuid().ToString("N")[..10];
        int port = PipelineHost.FreePort(), gateway = PipelineHost.FreePort();
        string[] cluster = ["--gateway-port", $"{gateway}", "--cluster-id", clusterId];
        await using var silo = ChildProcess.Start("silo",
        [
            "silo", "--silo-port", $"{port}", "--devices", "none", "--parent-pid", $"{Environment.ProcessId}", "--verbose",
            "--model-roots", models, "--manifest-roots", data, "--image-roots", data, "--output-roots", $"{outs},az://results/team-a", .. cluster,
        ]);
        await silo.WaitForOutputAsync("declares no devices", TimeSpan.FromMinutes(2));

        async Task<(int Code, string Output)> Submit(string runId, string modelDir, string manifest, string outDir, params string[] extra)
        {
            var r = await ChildProcess.RunAsync(runId, ["submit", "--model", modelDir, "--dataset", manifest, "--out", outDir, "--run-id", runId, .. extra, .. cluster],
                null, TimeSpan.FromMinutes(2));
            output.WriteLine($"--- {runId}: exit {r.Code}\n{r.Output}");
            return (r.Code, r.Output);
        }

        var ok = await Submit("inside", model, inside.ManifestPath, Path.Combine(outs, "run"));
        Assert.True(ok.Code == 0, ok.Output);
        Assert.Contains("inside: running", ok.Output);

        var fixtures = await Submit("model-outside", TestData.TinyModel, inside.ManifestPath, Path.Combine(outs, "a"));
        Assert.NotEqual(0, fixtures.Code);
        Assert.Contains($"model folder '{TestData.TinyModel}' is outside this silo's model roots ({models}; Pipeline:Roots:Models)", fixtures.Output);

        var link = await Submit("model-link", sneaky, inside.ManifestPath, Path.Combine(outs, "b"));
        Assert.NotEqual(0, link.Code);
        Assert.Contains($"model folder '{sneaky}' (it leads to '{Path.GetFullPath(TestData.TinyModel)}') is outside", link.Output);

        var manifest = await Submit("manifest-outside", model, outside.ManifestPath, Path.Combine(outs, "c"));
        Assert.NotEqual(0, manifest.Code);
        Assert.Contains($"manifest '{outside.ManifestPath}' is outside this silo's manifest roots", manifest.Output);

        var images = await Submit("image-root-outside", model, inside.ManifestPath, Path.Combine(outs, "d"), "--image-root", "/etc");
        Assert.NotEqual(0, images.Code);
        Assert.Contains("image root '/etc' is outside this silo's image roots", images.Output);

        var write = await Submit("output-outside", model, inside.ManifestPath, tmp.Sub("loot"));
        Assert.NotEqual(0, write.Code);
        Assert.Contains($"output '{tmp.Sub("loot")}' is outside this silo's output roots", write.Output);
        Assert.False(Directory.Exists(tmp.Sub("loot")), "a refused job created its output folder");

        var container = await Submit("container-outside", model, inside.ManifestPath, "az://results/team-b/run");
        Assert.NotEqual(0, container.Code);
        Assert.Contains("output 'az://results/team-b/run' is outside this silo's output roots", container.Output);

        // Refused jobs were never recorded: only the accepted one is listed.
        var status = await ChildProcess.RunAsync("status-model-outside", ["status", "--job", "model-outside", .. cluster], null, TimeSpan.FromMinutes(2));
        Assert.DoesNotContain("model-outside: running", status.Output);
    }

    [Fact]
    public void Roots_of_a_run_on_one_machine_admit_what_its_command_line_names()
    {
        using var tmp = new TempDir();
        var spec = new JobSpec("r", TestData.TinyModel, Path.Combine(tmp.Path, "m.jsonl"), "az://results/x", new JobOptions());
        var roots = PathRoots.ForCommandLine(spec, tmp.Path);
        roots.Check(spec);
        Assert.Throws<ArgumentException>(() => roots.Check(spec with { ModelDir = "/etc" }));
        Assert.Throws<ArgumentException>(() => new PathRoots { Models = ["relative/dir"] }.Validate());
        new PathRoots().Check(spec with { ModelDir = "/etc" });   // no roots: a silo on a desk reads anywhere
    }
}
