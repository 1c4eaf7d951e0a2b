namespace LlavaMech.Model;

/// <summary>
/// One model family: which checkpoints it claims (config.json's <c>model_type</c>, or for configs without one its
/// <c>architectures</c>) and how it loads them. Families live in <c>src/LlavaMech.Model/Families/&lt;Name&gt;</c> and are
/// listed once in <see cref="ModelFamilies.Known"/>.
/// </summary>
public interface IModelFamily
{
    /// <summary>Short name, e.g. "llava".</summary>
    string Name { get; }
    /// <summary>config.json <c>model_type</c> values this family loads.</summary>
    IReadOnlyList<string> ModelTypes { get; }
    /// <summary>config.json <c>architectures</c> entries this family loads (used when model_type is absent).</summary>
    IReadOnlyList<string> Architectures { get; }
    /// <summary>Whether this family reads a parsed <see cref="ModelConfig"/> of this kind (null: it parses its own config).</summary>
    ModelKind? Kind { get; }

    /// <summary>Validates the checkpoint folder and builds the model on the chosen device.</summary>
    IHookedModel Load(string dir, ModelLoadOptions? options = null);
}

/// <summary>The registry of model families, keyed by config.json's <c>model_type</c> / <c>architectures</c>.</summary>
public static class ModelFamilies
{
    /// <summary>Every family, in lookup order. A new family is one folder under Families and one entry here.</summary>
    public static IReadOnlyList<IModelFamily> Known { get; } = [LlavaFamily.Instance, LlavaNextFamily.Instance, LlamaFamily.Instance];

    /// <summary>The family of the checkpoint at <paramref name="modelDirOrConfig"/> (a folder or its config.json), from the raw JSON.</summary>
    /// <exception cref="CheckpointException">No config, or a model_type / architectures no family claims (the message lists the known families).</exception>
    public static IModelFamily Resolve(string modelDirOrConfig)
    {
        var path = Path.GetFullPath(File.Exists(modelDirOrConfig) ? modelDirOrConfig : Path.Combine(modelDirOrConfig, "config.json"));
        if (!File.Exists(path)) throw new CheckpointException($"config '{path}' does not exist");
        string? modelType = null;
        var architectures = new List<string>();
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            if (root.ValueKind == System.Text.Json.JsonValueKind.Object)
            {
                if (root.TryGetProperty("model_type", out var mt) && mt.ValueKind == System.Text.Json.JsonValueKind.String) modelType = mt.GetString();
                if (root.TryGetProperty("architectures", out var arch) && arch.ValueKind == System.Text.Json.JsonValueKind.Array)
                    architectures.AddRange(arch.EnumerateArray().Where(a => a.ValueKind == System.Text.Json.JsonValueKind.String).Select(a => a.GetString()!));
            }
        }
        catch (System.Text.Json.JsonException e) { throw new CheckpointException($"config '{path}' is not valid JSON: {e.Message}", e); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CheckpointException($"config '{path}' cannot be read: {e.Message}", e); }
        return Resolve(modelType, architectures, path);
    }

    /// <summary>The family claiming <paramref name="modelType"/> (or, when it is null, one of <paramref name="architectures"/>).</summary>
    /// <param name="source">the config.json path, for the message.</param>
    public static IModelFamily Resolve(string? modelType, IEnumerable<string> architectures, string source)
    {
        if (modelType is not null)
            return Known.FirstOrDefault(f => f.ModelTypes.Contains(modelType, StringComparer.Ordinal))
                ?? throw new CheckpointException($"config '{source}': model_type '{modelType}' belongs to no known model family; known families: {Describe()}");
        var arch = architectures.ToList();
        return Known.FirstOrDefault(f => f.Architectures.Any(a => arch.Contains(a, StringComparer.Ordinal)))
            ?? throw new CheckpointException($"config '{source}' has no model_type and its architectures [{string.Join(", ", arch)}] belong to no known model family; known families: {Describe()}");
    }

    /// <summary>The family of a parsed configuration.</summary>
    public static IModelFamily Resolve(ModelConfig config) =>
        Known.FirstOrDefault(f => f.Kind == config.Kind)
        ?? throw new CheckpointException($"config '{config.SourcePath}': no known model family reads a {config.Kind} configuration; known families: {Describe()}");

    /// <summary>Resolves the family of <paramref name="dir"/> and loads it.</summary>
    public static IHookedModel Load(string dir, ModelLoadOptions? options = null) => Resolve(dir).Load(dir, options);

    /// <summary>"llava (model_type llava; LlavaForConditionalGeneration), llama (...)".</summary>
    public static string Describe() => string.Join(", ", Known.Select(f =>
        $"{f.Name} (model_type {string.Join(" | ", f.ModelTypes)}; {string.Join(" | ", f.Architectures)})"));
}
