using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LlavaMech.Datasets.Manifest;
using LlavaMech.Model;

namespace LlavaMech.Training;

/// <summary>
/// Checks and reads what a toy training run is given (the data folder, manifests, a JSON of option overrides, a time
/// budget) before <see cref="ToyTrainer.Train"/> runs, and states its plan.
/// </summary>
public static class ToyTrainingSetup
{
    /// <summary>Null when <paramref name="dir"/> can serve as --data; <paramref name="manifest"/> is its manifest.jsonl if it has one.</summary>
    public static string? CheckDataDir(string dir, out string? manifest)
    {
        manifest = null;
        if (File.Exists(dir)) return $"--data {dir} is a file; give a folder (one holding manifest.jsonl to train on it, or one to generate the data in)";
        try
        {
            if (Directory.Exists(dir))
            {
                _ = Directory.EnumerateFileSystemEntries(dir).FirstOrDefault();   // readable?
                var m = Path.Combine(dir, "manifest.jsonl");
                if (File.Exists(m))
                {
                    manifest = m;
                    return null;
                }
            }
            // The data is generated here: the folder must be writable.
            Directory.CreateDirectory(dir);
            var probe = Path.Combine(dir, ".llavamech-write-test");
            File.WriteAllText(probe, "");
            File.Delete(probe);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"--data {dir}: cannot use this folder ({e.Message})";
        }
    }

    /// <summary>Null when the manifest can be trained or scored on; otherwise every problem, one per line.</summary>
    public static string? CheckManifest(string path, string role)
    {
        ManifestReadResult m;
        try
        {
            m = ManifestReader.Read(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{role} manifest {path}: cannot read it ({e.Message})";
        }
        var problems = m.Rejects.Select(r => r.Message).ToList();
        var unanswered = m.Examples.Where(e => e.Expected is null).ToList();
        if (role == "training")
            problems.AddRange(unanswered.Take(20).Select(e => $"line {e.Line}: '{e.Id}' has no expected answer (training needs one on every line)"));
        if (problems.Count > 0)
        {
            int bad = m.Rejects.Count + (role == "training" ? unanswered.Count : 0);
            return $"{role} manifest {path}: {bad} bad line(s), nothing trained:\n  " + string.Join("\n  ", problems.Take(40))
                   + (problems.Count > 40 ? $"\n  ... and {problems.Count - 40} more" : "")
                   + $"\n(./llavamech dataset validate {path} lists the rejected lines)";
        }
        if (m.Examples.Count(e => e.Expected is not null) == 0) return $"{role} manifest {path} has no example with an expected answer";
        return null;
    }

    /// <summary>
    /// Defaults overlaid with the JSON object in <paramref name="path"/> (or its "options" object, as in a
    /// training record); also the names of the properties it set.
    /// </summary>
    public static (ToyTrainingOptions Options, HashSet<string> Set) ReadConfig(string path)
    {
        JsonObject overrides;
        try
        {
            var node = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            overrides = node as JsonObject ?? throw new InvalidOptionException($"--config {path}: expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidOptionException($"--config {path}: not valid JSON ({e.Message})");
        }
        if (overrides["options"] is JsonObject recorded && overrides["result"] is not null) overrides = recorded;

        var merged = JsonSerializer.SerializeToNode(new ToyTrainingOptions())!.AsObject();
        var known = merged.Select(kv => kv.Key).ToList();
        var unknown = new List<string>();
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, value) in overrides)
        {
            var key = known.FirstOrDefault(k => string.Equals(k, name, StringComparison.OrdinalIgnoreCase));
            if (key is null) unknown.Add(name);
            else
            {
                merged[key] = value?.DeepClone();
                set.Add(key);
            }
        }
        if (unknown.Count > 0)
            throw new InvalidOptionException($"--config {path}: unknown option(s) {string.Join(", ", unknown)}; known: {string.Join(", ", known)}");
        try
        {
            return (merged.Deserialize<ToyTrainingOptions>(new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals })!, set);
        }
        catch (JsonException e)
        {
            throw new InvalidOptionException($"--config {path}: {e.Path}: wrong type of value ({e.Message})");
        }
    }

    /// <summary>"15m", "900s", "900", "1h", "1h30m", "00:15:00"; "none" or "0": no budget.</summary>
    public static TimeSpan? ParseDuration(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t is "none" or "0" or "off") return null;
        if (t.Contains(':'))
            return TimeSpan.TryParse(t, CultureInfo.InvariantCulture, out var ts) && ts > TimeSpan.Zero ? ts
                : throw new InvalidOptionException($"--time-budget {text}: expected a duration such as 15m, 900s, 1h30m, 00:15:00 or none");
        var total = TimeSpan.Zero;
        int i = 0;
        bool any = false;
        while (i < t.Length)
        {
            int start = i;
            while (i < t.Length && (char.IsDigit(t[i]) || t[i] == '.')) i++;
            if (i == start || !double.TryParse(t[start..i], NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) { any = false; break; }
            char unit = i < t.Length ? t[i++] : 's';
            total += unit switch
            {
                'h' => TimeSpan.FromHours(v),
                'm' => TimeSpan.FromMinutes(v),
                's' => TimeSpan.FromSeconds(v),
                _ => throw new InvalidOptionException($"--time-budget {text}: unknown unit '{unit}' (use h, m, s or hh:mm:ss)"),
            };
            any = true;
        }
        if (!any || total <= TimeSpan.Zero)
            throw new InvalidOptionException($"--time-budget {text}: expected a duration such as 15m, 900s, 1h30m, 00:15:00 or none");
        return total;
    }

    /// <summary>What the run will do, in three lines.</summary>
    public static string Plan(ToyTrainingOptions o)
    {
        string data = o.TrainManifest is not null ? $"manifest {o.TrainManifest}"
            : $"{o.TrainCount} VQA + {o.TrainTextQaCount} TQA generated (seed {o.TrainSeed}{(o.ConfusableTrainCount > 0 ? $", + 3 x {o.ConfusableTrainCount} confusable" : "")}) in {(o.WorkDir is null ? "a temporary folder" : Path.GetFullPath(o.WorkDir))}";
        string steps = o.Epochs is double ep ? $"{ep} epochs" : $"{o.Steps} steps";
        return $"[train-toy] data: {data}\n"
               + $"[train-toy] model: text {o.TextHiddenSize}x{o.TextLayers} layers, vision {o.VisionHiddenSize}x{o.VisionLayers} layers; "
               + $"{o.VisionPretrainSteps} vision pre-training + {steps}; time budget {(o.TimeBudget is TimeSpan b ? b.ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture) : "none")}; "
               + $"threads {(o.Threads > 0 ? o.Threads : Environment.ProcessorCount)}\n"
               + $"[train-toy] out: {Path.GetFullPath(o.OutputDir)}";
    }
}
