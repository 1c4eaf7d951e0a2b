using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LlavaMech.Training;

/// <summary>
/// The files a toy model folder shares with the tiny fixture: tokenizer, image processor, and the
/// llava config.json whose vocabulary, special tokens and image geometry the toy keeps (its sizes
/// are replaced by the options').
/// </summary>
internal sealed class ToyTemplate
{
    public const string ConfigFile = "config.json";
    public const string PreprocessorFile = "preprocessor_config.json";

    /// <summary>Copied verbatim into every saved model.</summary>
    public static readonly string[] CopiedFiles = ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", PreprocessorFile];

    private const string ResourcePrefix = "toy-template/";

    private readonly Dictionary<string, byte[]> _files;

    private ToyTemplate(Dictionary<string, byte[]> files, string source)
    {
        _files = files;
        Source = source;
    }

    /// <summary>The template folder, or "built-in".</summary>
    public string Source { get; }

    public static ToyTemplate Load(string? dir)
    {
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var name in CopiedFiles.Append(ConfigFile))
        {
            if (dir is not null)
            {
                var path = Path.Combine(dir, name);
                if (!File.Exists(path)) throw new FileNotFoundException($"template folder '{dir}' has no {name}", path);
                files[name] = File.ReadAllBytes(path);
            }
            else
            {
                using var s = Assembly.GetExecutingAssembly().GetManifestResourceStream(ResourcePrefix + name)
                    ?? throw new InvalidOperationException($"built-in template file {name} is missing from {Assembly.GetExecutingAssembly().GetName().Name}");
                using var ms = new MemoryStream();
                s.CopyTo(ms);
                files[name] = ms.ToArray();
            }
        }
        return new ToyTemplate(files, dir is null ? "built-in" : Path.GetFullPath(dir));
    }

    /// <summary>Writes the tokenizer and image-processor files and config.json for the options' sizes.</summary>
    public void WriteTo(string dir, ToyTrainingOptions o)
    {
        Directory.CreateDirectory(dir);
        foreach (var name in CopiedFiles)
            File.WriteAllBytes(Path.Combine(dir, name), _files[name]); // not File.Copy: the fixture files are read-only
        File.WriteAllText(Path.Combine(dir, ConfigFile), ConfigJson(o));
    }

    /// <summary>The template's config.json with the toy sizes; everything else (vocabulary, special ids, image geometry) kept.</summary>
    public string ConfigJson(ToyTrainingOptions o)
    {
        var root = JsonNode.Parse(_files[ConfigFile])!.AsObject();
        var text = root["text_config"]!.AsObject();
        var vision = root["vision_config"]!.AsObject();
        if (o.TextHiddenSize % o.TextHeads != 0)
            throw new ArgumentException($"TextHiddenSize {o.TextHiddenSize} is not a multiple of TextHeads {o.TextHeads}");
        if (o.VisionHiddenSize % o.VisionHeads != 0)
            throw new ArgumentException($"VisionHiddenSize {o.VisionHiddenSize} is not a multiple of VisionHeads {o.VisionHeads}");
        if ((o.TextHiddenSize / o.TextHeads) % 2 != 0)
            throw new ArgumentException("the text head size must be even (rotary embedding)");
        if (o.VisionLayers < 2)
            throw new ArgumentException("VisionLayers must be at least 2 (LLaVA reads layer -2)");

        text["hidden_size"] = o.TextHiddenSize;
        text["intermediate_size"] = o.TextIntermediateSize;
        text["num_hidden_layers"] = o.TextLayers;
        text["num_attention_heads"] = o.TextHeads;
        text["num_key_value_heads"] = o.TextHeads;
        text["head_dim"] = o.TextHiddenSize / o.TextHeads;
        vision["hidden_size"] = o.VisionHiddenSize;
        vision["intermediate_size"] = o.VisionIntermediateSize;
        vision["num_hidden_layers"] = o.VisionLayers;
        vision["num_attention_heads"] = o.VisionHeads;
        root["torch_dtype"] = o.SaveFloat16 ? "float16" : "float32";
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 1 }) + "\n";
    }
}
