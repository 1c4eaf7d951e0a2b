using System.Text.Json;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints;

/// <summary>
/// The weights of one model directory: a single model.safetensors or a sharded set described by
/// model.safetensors.index.json. The index is cross-checked against the shard headers, because a stale
/// or hand-edited index otherwise loads the wrong tensor silently.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _owner;
    private readonly Dictionary<string, TensorEntry> _tensors;

    private Checkpoint(string modelDir, string? indexPath, List<SafetensorsFile> files,
        Dictionary<string, SafetensorsFile> owner, Dictionary<string, TensorEntry> tensors)
        => (ModelDir, IndexPath, _files, _owner, _tensors) = (modelDir, indexPath, files, owner, tensors);

    public string ModelDir { get; }
    /// <summary>The index file for a sharded checkpoint, else null.</summary>
    public string? IndexPath { get; }
    public IReadOnlyList<SafetensorsFile> Files => _files;
    /// <summary>All tensors across shards.</summary>
    public IReadOnlyDictionary<string, TensorEntry> Tensors => _tensors;

    /// <summary>
    /// Opens modelDir/model.safetensors, or else modelDir/model.safetensors.index.json and its shards
    /// (Hugging Face's order of preference). A path to a single .safetensors file is accepted too.
    /// </summary>
    public static Checkpoint Open(string modelDir)
    {
        var full = Path.GetFullPath(modelDir);
        if (File.Exists(full))
            return FromSingle(Path.GetDirectoryName(full)!, full);
        if (!Directory.Exists(full))
            throw new CheckpointException($"model directory '{full}' does not exist");

        var single = Path.Combine(full, SingleFileName);
        if (File.Exists(single)) return FromSingle(full, single);
        var index = Path.Combine(full, IndexFileName);
        if (File.Exists(index)) return FromIndex(full, index);

        var hint = File.Exists(Path.Combine(full, "pytorch_model.bin")) || File.Exists(Path.Combine(full, "pytorch_model.bin.index.json"))
            ? " (only PyTorch .bin weights are present; convert them to safetensors)"
            : "";
        throw new CheckpointException($"model directory '{full}' has neither {SingleFileName} nor {IndexFileName}{hint}");
    }

    private static Checkpoint FromSingle(string dir, string file)
    {
        var f = SafetensorsFile.Open(file);
        var owner = f.Tensors.Keys.ToDictionary(k => k, _ => f, StringComparer.Ordinal);
        var tensors = new Dictionary<string, TensorEntry>(f.Tensors, StringComparer.Ordinal);
        return new Checkpoint(dir, null, [f], owner, tensors);
    }

    private static Checkpoint FromIndex(string dir, string indexPath)
    {
        CheckpointException Fail(string detail) => new($"index '{indexPath}': {detail}");

        var weightMap = ReadWeightMap(indexPath, Fail);
        var files = new List<SafetensorsFile>();
        try
        {
            // Open shards in name order so errors and Files are deterministic.
            var byShard = new SortedDictionary<string, List<string>>(StringComparer.Ordinal);
            foreach (var (weight, shard) in weightMap)
            {
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw Fail($"weight '{weight}' names shard '{shard}', which is not a plain file name in the model directory");
                if (!byShard.TryGetValue(shard, out var list)) byShard[shard] = list = [];
                list.Add(weight);
            }
            if (byShard.Count == 0) throw Fail("weight_map is empty");

            var opened = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (shard, weights) in byShard)
            {
                var shardPath = Path.Combine(dir, shard);
                if (!File.Exists(shardPath))
                    throw Fail($"shard file '{shardPath}' does not exist ({weights.Count} weights are mapped to it, e.g. '{weights[0]}')");
                var f = SafetensorsFile.Open(shardPath);
                files.Add(f);
                opened[shard] = f;
            }

            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            var tensors = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
            foreach (var f in files)
                foreach (var (name, entry) in f.Tensors)
                {
                    if (owner.TryGetValue(name, out var first))
                        throw Fail($"tensor '{name}' is in two shards: file '{first.Path}' and file '{f.Path}'");
                    owner[name] = f;
                    tensors[name] = entry;
                }

            foreach (var (weight, shard) in weightMap)
            {
                var named = opened[shard];
                if (!named.Tensors.ContainsKey(weight))
                    throw Fail(owner.TryGetValue(weight, out var actual)
                        ? $"maps tensor '{weight}' to file '{named.Path}', but it is in file '{actual.Path}'"
                        : $"maps tensor '{weight}' to file '{named.Path}', which has no such tensor");
            }
            foreach (var (name, f) in owner)
                if (!weightMap.ContainsKey(name))
                    throw Fail($"tensor '{name}' in file '{f.Path}' is not listed in the index");

            return new Checkpoint(dir, indexPath, files, owner, tensors);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath, Func<string, CheckpointException> fail)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"index '{indexPath}' is not valid JSON: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"index '{indexPath}' cannot be read: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object ||
                !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw fail("has no weight_map object");
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw fail($"weight_map entry '{p.Name}' must be a shard file name, found {p.Value.ValueKind}");
                if (!map.TryAdd(p.Name, p.Value.GetString()!))
                    throw fail($"weight_map lists '{p.Name}' twice");
            }
            return map;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public Tensor Read(string name, ScalarType dtype, Device? device = null) => FileOf(name).Read(name, dtype, device);

    /// <summary>The tensor exactly as stored (file dtype, CPU).</summary>
    public Tensor ReadRaw(string name) => FileOf(name).ReadRaw(name);

    /// <summary>"tensor 'x' in file '/path/shard'", for error messages.</summary>
    public string Describe(string name) =>
        _owner.TryGetValue(name, out var f)
            ? $"tensor '{name}' in file '{f.Path}'"
            : $"tensor '{name}' (not in checkpoint '{ModelDir}')";

    private SafetensorsFile FileOf(string name) =>
        _owner.TryGetValue(name, out var f)
            ? f
            : throw new CheckpointException($"tensor '{name}' not found in checkpoint '{IndexPath ?? _files[0].Path}'");

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
