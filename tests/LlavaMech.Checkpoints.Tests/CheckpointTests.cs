using System.Text.Json.Nodes;
using LlavaMech.Testing;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints.Tests;

public class CheckpointTests
{
    private static bool Same(Tensor a, Tensor b) => TensorAssert.Same(a, b);

    private static List<(string Name, Tensor Tensor)> ReadAll(Checkpoint c) =>
        c.Tensors.Keys.Select(k => (k, c.ReadRaw(k))).ToList();

    [Fact]
    public void SingleFile_OpensFromDirectory()
    {
        var dir = Path.GetFullPath(Fixtures.Model("tiny-llava-mha"));
        using var c = Checkpoint.Open(dir);
        Assert.Equal(dir, c.ModelDir);
        Assert.Null(c.IndexPath);
        Assert.Single(c.Files);
        Assert.Equal(98, c.Tensors.Count);
        Assert.Equal($"tensor 'vision_tower.pre_layrnorm.weight' in file '{Path.Combine(dir, "model.safetensors")}'",
            c.Describe("vision_tower.pre_layrnorm.weight"));
        Assert.Equal($"tensor 'nope' (not in checkpoint '{dir}')", c.Describe("nope"));
        var e = Assert.Throws<CheckpointException>(() => c.Read("nope", ScalarType.Float32));
        Assert.Equal($"tensor 'nope' not found in checkpoint '{Path.Combine(dir, "model.safetensors")}'", e.Message);
    }

    [Fact]
    public void Sharded_RoundTripReadsIdenticalTensors()
    {
        using var tmp = new TempDir();
        using var src = Checkpoint.Open(Fixtures.Model("tiny-llava-mha"));
        var all = ReadAll(src);

        SafetensorsWriter.WriteSharded(tmp.Path, all, shards: 3);

        var names = Directory.GetFiles(tmp.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(new[] { "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors", "model.safetensors.index.json" }, names);

        var index = JsonNode.Parse(File.ReadAllText(tmp.File("model.safetensors.index.json")))!;
        Assert.Equal(all.Sum(t => t.Tensor.numel() * 4), index["metadata"]!["total_size"]!.GetValue<long>());
        var mapKeys = index["weight_map"]!.AsObject().Select(p => p.Key).ToList();
        Assert.Equal(mapKeys.Order(StringComparer.Ordinal), mapKeys); // sorted like HF's json.dumps(sort_keys=True)

        using var sharded = Checkpoint.Open(tmp.Path);
        Assert.Equal(tmp.File("model.safetensors.index.json"), sharded.IndexPath);
        Assert.Equal(3, sharded.Files.Count);
        Assert.All(sharded.Files, f => Assert.NotEmpty(f.Tensors));
        Assert.Equal(src.Tensors.Keys.Order(), sharded.Tensors.Keys.Order());
        foreach (var (name, t) in all)
        {
            using var back = sharded.Read(name, ScalarType.Float32);
            Assert.True(Same(back, t), name);
            Assert.Equal(index["weight_map"]![name]!.GetValue<string>(), Path.GetFileName(sharded.Tensors[name].FilePath));
            t.Dispose();
        }
        var last = all[^1].Name;
        Assert.Equal($"tensor '{last}' in file '{tmp.File("model-00003-of-00003.safetensors")}'", sharded.Describe(last));
    }

    [Fact]
    public void WriteSharded_OneShardIsPlainFile_AndStaleShardsGo()
    {
        using var tmp = new TempDir();
        var tensors = new List<(string, Tensor)> { ("a", ones(4)), ("b", zeros(2, 2)) };
        SafetensorsWriter.WriteSharded(tmp.Path, tensors, 2);
        SafetensorsWriter.WriteSharded(tmp.Path, tensors, 1, SafetensorsDType.BF16);

        Assert.Equal(new[] { "model.safetensors" }, Directory.GetFiles(tmp.Path).Select(Path.GetFileName));
        using var c = Checkpoint.Open(tmp.Path);
        Assert.Equal(SafetensorsDType.BF16, c.Tensors["a"].DType);
    }

    [Fact]
    public void WriteSharded_RejectsMoreShardsThanTensors()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<ArgumentException>(() => SafetensorsWriter.WriteSharded(tmp.Path, [("a", ones(1))], 2));
        Assert.StartsWith("cannot split 1 tensors into 2 non-empty shards", e.Message);
    }

    [Fact]
    public void SingleFilePath_OpensDirectly()
    {
        var file = Path.GetFullPath(Fixtures.File("tiny-vicuna", "model.safetensors"));
        using var c = Checkpoint.Open(file);
        Assert.Equal(39, c.Tensors.Count);
    }

    [Fact]
    public void EmptyDirectory_SaysWhatIsMissing()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(tmp.Path));
        Assert.Equal($"model directory '{tmp.Path}' has neither model.safetensors nor model.safetensors.index.json", e.Message);

        File.WriteAllBytes(tmp.File("pytorch_model.bin"), [0]);
        e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(tmp.Path));
        Assert.EndsWith("(only PyTorch .bin weights are present; convert them to safetensors)", e.Message);

        e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(tmp.File("absent")));
        Assert.Equal($"model directory '{tmp.File("absent")}' does not exist", e.Message);
    }
}

/// <summary>Index validation: a wrong index must fail at Open, naming the index and the tensor.</summary>
public class ShardIndexTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly string _index;

    public ShardIndexTests()
    {
        // Two shards: a,b in shard 1; c in shard 2.
        SafetensorsWriter.WriteSharded(_tmp.Path, [("a", ones(2)), ("b", ones(3)), ("c", ones(5))], 2);
        _index = _tmp.File("model.safetensors.index.json");
    }

    public void Dispose() => _tmp.Dispose();

    private static string Shard(int k) => $"model-0000{k}-of-00002.safetensors";

    private void EditMap(Action<JsonObject> edit)
    {
        var root = JsonNode.Parse(File.ReadAllText(_index))!;
        edit(root["weight_map"]!.AsObject());
        File.WriteAllText(_index, root.ToJsonString());
    }

    private CheckpointException Fails() => Assert.Throws<CheckpointException>(() => Checkpoint.Open(_tmp.Path));

    [Fact]
    public void Layout_IsAsExpected()
    {
        using var c = Checkpoint.Open(_tmp.Path);
        Assert.Equal(Shard(1), Path.GetFileName(c.Tensors["b"].FilePath));
        Assert.Equal(Shard(2), Path.GetFileName(c.Tensors["c"].FilePath));
    }

    [Fact]
    public void MissingShardFile()
    {
        File.Delete(_tmp.File(Shard(2)));
        Assert.Equal($"index '{_index}': shard file '{_tmp.File(Shard(2))}' does not exist (1 weights are mapped to it, e.g. 'c')",
            Fails().Message);
    }

    [Fact]
    public void WeightInAnotherShardThanNamed()
    {
        EditMap(m => m["b"] = Shard(2));
        Assert.Equal($"index '{_index}': maps tensor 'b' to file '{_tmp.File(Shard(2))}', but it is in file '{_tmp.File(Shard(1))}'",
            Fails().Message);
    }

    [Fact]
    public void WeightInNoShard()
    {
        EditMap(m => m["ghost"] = Shard(2));
        Assert.Equal($"index '{_index}': maps tensor 'ghost' to file '{_tmp.File(Shard(2))}', which has no such tensor", Fails().Message);
    }

    [Fact]
    public void WeightInTwoShards()
    {
        SafetensorsWriter.Write(_tmp.File(Shard(2)), [("c", ones(5)), ("a", ones(2))]);
        Assert.Equal($"index '{_index}': tensor 'a' is in two shards: file '{_tmp.File(Shard(1))}' and file '{_tmp.File(Shard(2))}'",
            Fails().Message);
    }

    [Fact]
    public void ShardTensorNotInIndex()
    {
        EditMap(m => m.Remove("b"));
        Assert.Equal($"index '{_index}': tensor 'b' in file '{_tmp.File(Shard(1))}' is not listed in the index", Fails().Message);
    }

    [Fact]
    public void ShardNameEscapingDirectory()
    {
        EditMap(m => m["c"] = "../" + Shard(2));
        Assert.Equal($"index '{_index}': weight 'c' names shard '../{Shard(2)}', which is not a plain file name in the model directory",
            Fails().Message);
    }

    [Fact]
    public void IndexNotJson()
    {
        File.WriteAllText(_index, "{ weight_map");
        Assert.StartsWith($"index '{_index}' is not valid JSON: ", Fails().Message);
        File.WriteAllText(_index, "{}");
        Assert.Equal($"index '{_index}': has no weight_map object", Fails().Message);
    }

    [Fact]
    public void CorruptShard_NamesShardFile()
    {
        using (var fs = new FileStream(_tmp.File(Shard(2)), FileMode.Open)) fs.SetLength(fs.Length - 4);
        var e = Fails();
        Assert.Equal($"tensor 'c' in file '{_tmp.File(Shard(2))}': data_offsets [0, 20] end beyond the data section (16 bytes); the file is truncated",
            e.Message);
    }
}
