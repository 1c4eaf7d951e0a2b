using LlavaMech.Testing;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Checkpoints.Tests;

public class SafetensorsTests
{
    [Theory]
    [InlineData("tiny-llava-mha", 98, SafetensorsDType.F32)]
    [InlineData("tiny-llava-336", 80, SafetensorsDType.F16)]
    [InlineData("tiny-vicuna", 39, SafetensorsDType.F32)]
    public void Fixture_OpensWithExpectedEntries(string model, int count, SafetensorsDType dtype)
    {
        var path = Path.GetFullPath(Fixtures.File(model, "model.safetensors"));
        using var f = SafetensorsFile.Open(path);

        Assert.Equal(path, f.Path);
        Assert.Equal(count, f.Tensors.Count);
        Assert.All(f.Tensors.Values, e => Assert.Equal(dtype, e.DType));
        Assert.All(f.Tensors.Values, e => Assert.Equal(path, e.FilePath));
        Assert.Equal("pt", f.Metadata["format"]);
        // Header entries are checked against the data section, which this file fills exactly.
        Assert.Equal(f.DataLength, f.Tensors.Values.Max(e => e.End));
    }

    [Fact]
    public void FixtureEntries_HaveHeaderShapesAndOffsets()
    {
        using var f = SafetensorsFile.Open(Fixtures.File("tiny-llava-336", "model.safetensors"));
        var e = f.Tensors["vision_tower.embeddings.position_embedding.weight"];
        Assert.Equal(new long[] { 577, 32 }, e.Shape);
        Assert.Equal(405696, e.Begin);
        Assert.Equal(442624, e.End);
        Assert.Equal(new long[] { 32, 3, 14, 14 }, f.Tensors["vision_tower.embeddings.patch_embedding.weight"].Shape);
        Assert.Equal("language_model.lm_head.weight", f.Tensors.Keys.First()); // header order is kept
    }

    [Fact]
    public void ReadF16_ConvertsExactlyToF32()
    {
        var path = Fixtures.File("tiny-llava-336", "model.safetensors");
        using var f = SafetensorsFile.Open(path);
        const string name = "language_model.model.layers.0.mlp.down_proj.weight";
        var e = f.Tensors[name];

        using var t = f.Read(name, ScalarType.Float32);

        Assert.Equal(ScalarType.Float32, t.dtype);
        Assert.Equal(e.Shape, t.shape);
        // Decode the same bytes independently of torch.
        var bytes = File.ReadAllBytes(path);
        long start = f.DataStart + e.Begin;
        var expected = new float[e.NumElements];
        for (int i = 0; i < expected.Length; i++)
            expected[i] = (float)BitConverter.ToHalf(bytes, (int)(start + 2 * i));
        Assert.Equal(expected, t.data<float>().ToArray());
        Assert.Equal(0.806640625f, f.Read("vision_tower.pre_layrnorm.weight", ScalarType.Float32)[0].item<float>());
    }

    [Fact]
    public void ReadF32_MatchesFileBytes_AndKeepsDtypeWhenAsked()
    {
        var path = Fixtures.File("tiny-vicuna", "model.safetensors");
        using var f = SafetensorsFile.Open(path);
        var e = f.Tensors["model.norm.weight"];
        var bytes = File.ReadAllBytes(path);
        var expected = Enumerable.Range(0, 64).Select(i => BitConverter.ToSingle(bytes, (int)(f.DataStart + e.Begin + 4 * i))).ToArray();

        using var t = f.Read("model.norm.weight", ScalarType.Float32, CPU);
        Assert.Equal(expected, t.data<float>().ToArray());
        using var d = f.Read("model.norm.weight", ScalarType.Float64);
        Assert.Equal(expected.Select(x => (double)x).ToArray(), d.data<double>().ToArray());
    }

    [Theory]
    [InlineData(SafetensorsDType.BF16, ScalarType.BFloat16)]
    [InlineData(SafetensorsDType.F16, ScalarType.Float16)]
    public void HalfRewrite_ReadsBackAsRoundedF32(SafetensorsDType store, ScalarType half)
    {
        using var tmp = new TempDir();
        using var src = Checkpoint.Open(Fixtures.Model("tiny-llava-mha"));
        var names = new[] { "language_model.model.embed_tokens.weight", "vision_tower.embeddings.patch_embedding.weight", "multi_modal_projector.linear_1.bias" };
        var originals = names.Select(n => (n, src.Read(n, ScalarType.Float32))).ToList();
        var file = tmp.File("half.safetensors");

        SafetensorsWriter.Write(file, originals, store);

        using var f = SafetensorsFile.Open(file);
        foreach (var (name, orig) in originals)
        {
            Assert.Equal(store, f.Tensors[name].DType);
            using var back = f.Read(name, ScalarType.Float32);
            using var rounded = orig.to(half).to(ScalarType.Float32);
            Assert.True(TensorAssert.Same(back, rounded), name);            // widening is exact
            Assert.True(back.allclose(orig, rtol: 1e-2, atol: 1e-4), name);  // and close to the F32 source
            using var raw = f.Read(name, half);
            Assert.Equal(half, raw.dtype);
            orig.Dispose();
        }
    }

    [Fact]
    public void Writer_RoundTripsDtypesScalarsEmptiesAndMetadata()
    {
        using var tmp = new TempDir();
        var file = tmp.File("mix.safetensors");
        var tensors = new List<(string, Tensor)>
        {
            ("f32", arange(12, dtype: ScalarType.Float32).reshape(3, 4)),
            ("f64", tensor(new[] { 1.5, -2.25 })),
            ("i64", tensor(new long[] { long.MaxValue, -7 })),
            ("i32", tensor(new[] { 1, -2, 3 })),
            ("i16", tensor(new short[] { -300 })),
            ("i8", tensor(new sbyte[] { -5, 6 })),
            ("u8", tensor(new byte[] { 255, 0 })),
            ("bool", tensor(new[] { true, false, true })),
            ("scalar", tensor(3.5f)),
            ("empty", zeros(0, 5)),
            ("strided", arange(6, dtype: ScalarType.Float32).reshape(2, 3).t()), // non-contiguous source
        };

        SafetensorsWriter.Write(file, tensors, metadata: new Dictionary<string, string> { ["step"] = "42" });

        using var f = SafetensorsFile.Open(file);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal("42", f.Metadata["step"]);
        Assert.Equal(0, f.DataStart % 8); // data section aligned like the reference writer
        foreach (var (name, t) in tensors)
        {
            using var back = f.ReadRaw(name);
            Assert.Equal(t.dtype, back.dtype);
            Assert.Equal(t.shape, back.shape);
            Assert.True(TensorAssert.Same(back, t), name);
        }
        Assert.Equal(SafetensorsDType.BOOL, f.Tensors["bool"].DType);
        Assert.Empty(f.Tensors["scalar"].Shape);
        Assert.Equal(f.Tensors["empty"].Begin, f.Tensors["empty"].End);
        Assert.False(File.Exists(file + ".tmp"));
    }

    [Theory]
    [InlineData("tiny-vicuna")]
    [InlineData("tiny-llava-336")]
    public void Writer_ReproducesReferenceFileByteForByte(string model)
    {
        // The fixtures come from the Rust safetensors writer (single dtype, names sorted), so the same
        // tensors in the same order must give identical bytes: header format, padding and data alike.
        using var tmp = new TempDir();
        var path = Fixtures.File(model, "model.safetensors");
        using var f = SafetensorsFile.Open(path);
        var all = f.Tensors.Keys.Select(k => (k, f.ReadRaw(k))).ToList();

        SafetensorsWriter.Write(tmp.File("copy.safetensors"), all);

        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(tmp.File("copy.safetensors")));
        foreach (var (_, t) in all) t.Dispose();
    }

    [Fact]
    public void Writer_RejectsDuplicateNames()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<ArgumentException>(() =>
            SafetensorsWriter.Write(tmp.File("d.safetensors"), [("a", ones(1)), ("a", ones(1))]));
        Assert.StartsWith("tensor 'a' is given twice", e.Message);
    }

    [Fact]
    public void ReadUnknownTensor_NamesFile()
    {
        var path = Path.GetFullPath(Fixtures.File("tiny-vicuna", "model.safetensors"));
        using var f = SafetensorsFile.Open(path);
        var e = Assert.Throws<CheckpointException>(() => f.Read("nope", ScalarType.Float32));
        Assert.Equal($"tensor 'nope' not found in file '{path}'", e.Message);
    }

    [Fact]
    public void MissingFile_NamesPath()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(tmp.File("none.safetensors")));
        Assert.StartsWith($"cannot open safetensors file '{tmp.File("none.safetensors")}'", e.Message);
    }
}

/// <summary>Every rejection made by editing bytes of a fixture copy; each message must name the file and the tensor.</summary>
public class SafetensorsCorruptionTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly string _file;

    public SafetensorsCorruptionTests()
    {
        // tiny-vicuna: first entries lm_head.weight [602,64] at [0,154112], model.embed_tokens.weight at [154112,308224].
        _file = _tmp.File("model.safetensors");
        File.Copy(Fixtures.File("tiny-vicuna", "model.safetensors"), _file);
    }

    public void Dispose() => _tmp.Dispose();

    private CheckpointException Fails() => Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(_file));

    [Fact]
    public void TruncatedFile_SaysTruncated_AndNamesLastTensor()
    {
        using (var fs = new FileStream(_file, FileMode.Open)) fs.SetLength(fs.Length - 100);
        var e = Fails();
        Assert.Equal($"tensor 'model.norm.weight' in file '{_file}': data_offsets [1113088, 1113344] end beyond the data " +
                     "section (1113244 bytes); the file is truncated", e.Message);
    }

    [Fact]
    public void HeaderLengthTooBig_IsRejected()
    {
        SafetensorsBytes.SetHeaderLength(_file, 200_000_000);
        Assert.Equal($"safetensors file '{_file}': header length 200000000 exceeds the 100 MB limit; corrupt or not a safetensors file",
            Fails().Message);
    }

    [Fact]
    public void HeaderLengthPastEnd_IsRejected()
    {
        var len = (ulong)new FileInfo(_file).Length;
        SafetensorsBytes.SetHeaderLength(_file, len);
        Assert.Equal($"safetensors file '{_file}': header length {len} runs past the end of the file ({len} bytes); " +
                     "the file is truncated or not a safetensors file", Fails().Message);
    }

    [Fact]
    public void HeaderLengthZero_IsRejected()
    {
        SafetensorsBytes.SetHeaderLength(_file, 0);
        Assert.Equal($"safetensors file '{_file}': header length is 0; not a safetensors file", Fails().Message);
    }

    [Fact]
    public void ShorterThanEightBytes_IsRejected()
    {
        File.WriteAllBytes(_file, [1, 2, 3]);
        Assert.Equal($"safetensors file '{_file}': file is 3 bytes, too short for the 8-byte header length; truncated or not a safetensors file",
            Fails().Message);
    }

    [Fact]
    public void BadJson_IsRejected()
    {
        SafetensorsBytes.EditHeader(_file, h => "x" + h[1..]);
        Assert.StartsWith($"safetensors file '{_file}': header is not valid JSON: ", Fails().Message);
    }

    [Fact]
    public void InvalidUtf8_IsRejected()
    {
        var (h, data) = SafetensorsBytes.Split(_file);
        var bytes = System.Text.Encoding.UTF8.GetBytes(h);
        bytes[h.IndexOf("lm_head", StringComparison.Ordinal)] = 0xFF;
        SafetensorsBytes.Join(_file, bytes, data);
        Assert.Equal($"safetensors file '{_file}': header is not valid UTF-8", Fails().Message);
    }

    [Fact]
    public void HeaderNotAnObject_IsRejected()
    {
        SafetensorsBytes.EditHeader(_file, _ => "[1, 2]  ");
        Assert.Equal($"safetensors file '{_file}': header is not a JSON object (found Array)", Fails().Message);
    }

    [Fact]
    public void UnknownDtype_NamesTensor()
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "\"F32\"", "\"F8_E4M3\""));
        Assert.Equal($"tensor 'lm_head.weight' in file '{_file}': unknown or unsupported dtype 'F8_E4M3' " +
                     "(supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)", Fails().Message);
    }

    [Fact]
    public void OverlappingOffsets_NameBothTensors()
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "[154112,308224]", "[154000,308112]"));
        Assert.Equal($"tensors 'lm_head.weight' [0, 154112] and 'model.embed_tokens.weight' [154000, 308112] in file '{_file}' overlap",
            Fails().Message);
    }

    [Fact]
    public void SizeMismatch_NamesTensor()
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "[602,64]", "[602,63]"));
        Assert.Equal($"tensor 'lm_head.weight' in file '{_file}': data_offsets [0, 154112] hold 154112 bytes but dtype F32 " +
                     "with shape [602,63] needs 151704 bytes", Fails().Message);
    }

    [Fact]
    public void NegativeDimension_NamesTensor()
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "[602,64]", "[-602,64]"));
        Assert.Equal($"tensor 'lm_head.weight' in file '{_file}': shape [-602,64] has a negative dimension", Fails().Message);
    }

    [Fact]
    public void BeginAfterEnd_NamesTensor()
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "[0,154112]", "[154112,0]"));
        Assert.Equal($"tensor 'lm_head.weight' in file '{_file}': data_offsets [154112, 0] begin after they end", Fails().Message);
    }

    [Theory]
    [InlineData("\"dtype\":\"F32\",", "", "header entry has no dtype")]
    [InlineData("\"shape\":[602,64],", "", "header entry has no shape")]
    [InlineData(",\"data_offsets\":[0,154112]", "", "header entry has no data_offsets")]
    [InlineData("\"dtype\":\"F32\"", "\"dtype\":32", "dtype must be a string, found Number")]
    [InlineData("[602,64]", "\"602x64\"", "shape must be an array of integers, found String")]
    [InlineData("[602,64]", "[602,64.5]", "shape must be an array of integers, found [602,64.5]")]
    [InlineData("[0,154112]", "[0]", "data_offsets must be an array of two integers, found [0]")]
    [InlineData("[0,154112]", "[0,\"154112\"]", "data_offsets must be an array of two integers, found [0,\"154112\"]")]
    [InlineData("{\"dtype\":\"F32\",\"shape\":[602,64],\"data_offsets\":[0,154112]}", "7", "header entry must be an object, found Number")]
    public void MalformedEntry_NamesTensor(string find, string with, string detail)
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, find, with));
        Assert.Equal($"tensor 'lm_head.weight' in file '{_file}': {detail}", Fails().Message);
    }

    [Fact]
    public void DuplicateTensorName_IsRejected()
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "\"model.embed_tokens.weight\"", "\"lm_head.weight\""));
        Assert.Equal($"safetensors file '{_file}': tensor 'lm_head.weight' appears twice in the header", Fails().Message);
    }

    [Fact]
    public void NonStringMetadata_IsRejected()
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "\"format\":\"pt\"", "\"format\":1"));
        Assert.Equal($"safetensors file '{_file}': __metadata__ value 'format' must be a string, found Number", Fails().Message);
    }

    [Fact]
    public void FileShrinkingAfterOpen_FailsTheRead()
    {
        using var f = SafetensorsFile.Open(_file);
        // Open's checks passed; a writer truncating the file afterwards must not yield garbage.
        using (var fs = new FileStream(_file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) fs.SetLength(1000);
        var e = Assert.Throws<CheckpointException>(() => f.Read("model.norm.weight", ScalarType.Float32));
        Assert.StartsWith($"tensor 'model.norm.weight' in file '{_file}': unexpected end of file at offset", e.Message);
        Assert.EndsWith("the file is truncated", e.Message);
    }

    [Fact]
    public void BoolOutsideZeroOne_IsRejectedOnRead()
    {
        SafetensorsWriter.Write(_file, [("flags", tensor(new[] { true, false }))]);
        var bytes = File.ReadAllBytes(_file);
        bytes[^1] = 7;
        File.WriteAllBytes(_file, bytes);
        using var f = SafetensorsFile.Open(_file);
        var e = Assert.Throws<CheckpointException>(() => f.Read("flags", ScalarType.Bool));
        Assert.Equal($"tensor 'flags' in file '{_file}': BOOL data holds byte 7, expected 0 or 1", e.Message);
    }
}

/// <summary>The data section must be exactly the tensors' bytes: a gap, an overlap or trailing bytes are named.</summary>
public class SafetensorsLayoutTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly string _file;

    public SafetensorsLayoutTests()
    {
        // tiny-vicuna: lm_head.weight [0,154112], model.embed_tokens.weight [154112,308224], ..., data section 1113344 bytes.
        _file = _tmp.File("model.safetensors");
        File.Copy(Fixtures.File("tiny-vicuna", "model.safetensors"), _file);
    }

    public void Dispose() => _tmp.Dispose();

    private CheckpointException Fails() => Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(_file));

    [Fact]
    public void Fixture_data_section_is_exactly_its_tensors()
    {
        using var f = SafetensorsFile.Open(_file);
        Assert.Equal(f.DataLength, f.Tensors.Values.Sum(e => e.ByteLength));
    }

    [Fact]
    public void Trailing_bytes_after_the_last_tensor_are_refused()
    {
        using (var fs = new FileStream(_file, FileMode.Append)) fs.Write(new byte[16]);
        Assert.Equal($"safetensors file '{_file}': 16 trailing bytes after the last tensor 'model.norm.weight' [1113088, 1113344] belong to no " +
                     "tensor (data section 1113360 bytes)", Fails().Message);
    }

    [Fact]
    public void A_gap_between_tensors_is_refused()
    {
        // Drop lm_head's entry but keep its bytes: the first 154112 bytes belong to nothing.
        SafetensorsBytes.EditJson(_file, o => o.Remove("lm_head.weight"));
        Assert.Equal($"safetensors file '{_file}': the first 154112 bytes of the data section, before tensor 'model.embed_tokens.weight' " +
                     "[154112, 308224], belong to no tensor (a gap in the data section)", Fails().Message);
    }

    [Fact]
    public void A_gap_in_the_middle_is_refused()
    {
        // Shift embed_tokens' entry 4 bytes later (its size unchanged): a 4-byte hole after lm_head and an overlap after it.
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "[154112,308224]", "[154116,308228]"));
        Assert.Equal($"safetensors file '{_file}': 4 bytes between tensors 'lm_head.weight' [0, 154112] and 'model.embed_tokens.weight' " +
                     "[154116, 308228] belong to no tensor (a gap in the data section)", Fails().Message);
    }

    [Fact]
    public void Two_tensors_on_the_same_bytes_are_refused()
    {
        SafetensorsBytes.EditHeader(_file, h => SafetensorsBytes.ReplaceFirst(h, "[154112,308224]", "[0,154112]"));
        Assert.Equal($"tensors 'lm_head.weight' [0, 154112] and 'model.embed_tokens.weight' [0, 154112] in file '{_file}' overlap", Fails().Message);
    }

    [Fact]
    public void Removing_a_tensor_with_its_bytes_leaves_a_valid_file()
    {
        SafetensorsBytes.RemoveTensor(_file, "lm_head.weight");
        using var f = SafetensorsFile.Open(_file);
        Assert.False(f.Tensors.ContainsKey("lm_head.weight"));
        Assert.Equal(f.DataLength, f.Tensors.Values.Sum(e => e.ByteLength));
    }
}
