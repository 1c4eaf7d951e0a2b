using System.Text.Json;
using System.Text.Json.Nodes;
using LlavaMech.Testing;

namespace LlavaMech.Pipeline.Tests;

/// <summary>A temporary folder, removed on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir(string prefix = "llavamech-pipeline-")
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>
/// Test manifests built from the bundled <c>datasets/shapes-colors-mini</c>: its lines repeated under new ids (so
/// many examples share a source line, and so its statistics), plus malformed lines, a missing image and a prompt too
/// long for the tiny model's context (rejected only when a worker prepares it).
/// </summary>
public static class TestData
{
    public static string Bundled => System.IO.Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini");

    public static string TinyModel => Fixtures.Model("tiny-llava-mha");

    /// <summary>What was written: the manifest, and for each accepted example id its source line in the bundled manifest.</summary>
    public sealed record Built(string ManifestPath, IReadOnlyDictionary<string, int> SourceOf, IReadOnlyList<JsonObject> Sources,
        int ReaderRejects, IReadOnlyList<string> RuntimeRejectIds);

    /// <summary>
    /// Writes <paramref name="dir"/>/manifest.jsonl with <paramref name="copies"/> copies of <paramref name="perTask"/>
    /// vqa and as many tqa lines of the bundled manifest, interleaved with bad lines, and copies the images.
    /// </summary>
    public static Built Build(string dir, int perTask, int copies)
    {
        var all = File.ReadAllLines(System.IO.Path.Combine(Bundled, "manifest.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var sources = all.Where(o => (string)o["task"]! == "vqa").Take(perTask)
            .Concat(all.Where(o => (string)o["task"]! == "tqa").Take(perTask)).ToList();
        Directory.CreateDirectory(System.IO.Path.Combine(dir, "images"));
        foreach (var s in sources.Where(s => s["image"] is not null))
        {
            string rel = (string)s["image"]!;
            File.Copy(System.IO.Path.Combine(Bundled, rel), System.IO.Path.Combine(dir, rel), overwrite: true);
        }

        var lines = new List<string>();
        var sourceOf = new Dictionary<string, int>();
        int readerRejects = 0;
        var runtime = new List<string>();
        void Bad(string line) { lines.Add(line); readerRejects++; }
        for (int c = 0; c < copies; c++)
        {
            for (int i = 0; i < sources.Count; i++)
            {
                var o = sources[i].DeepClone().AsObject();
                string id = $"ex-{c:D2}-{i:D3}";
                o["id"] = id;
                lines.Add(o.ToJsonString());
                sourceOf[id] = i;
                // Bad lines among the good ones, at different places in different copies.
                if (i == 5 + c) Bad("{\"id\": \"broken\", \"task\": \"vqa\", \"prompt\": ");                      // invalid JSON
                if (i == 17 + c) Bad($"{{\"id\": \"no-task-{c}\", \"prompt\": \"USER: hello\\nASSISTANT:\"}}");     // missing task
                if (i == 29 + c)
                    Bad(JsonSerializer.Serialize(new { id = $"missing-image-{c}", task = "vqa", image = "images/does-not-exist.png",
                        prompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is", expected = "red" }));
            }
        }
        // Accepted by the reader, rejected by the worker: longer than the model's 1024 positions.
        string longId = "too-long";
        lines.Insert(lines.Count / 2, JsonSerializer.Serialize(new
        {
            id = longId, task = "tqa", prompt = "USER: " + string.Concat(Enumerable.Repeat("what is the color of the sky and the sea ", 200)) + "\nASSISTANT:",
            expected = "blue",
        }));
        runtime.Add(longId);
        Bad("[1, 2, 3]");   // not an object, last line
        string path = System.IO.Path.Combine(dir, "manifest.jsonl");
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return new Built(path, sourceOf, sources, readerRejects, runtime);
    }
}
