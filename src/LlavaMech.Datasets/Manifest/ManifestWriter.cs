using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace LlavaMech.Datasets.Manifest;

/// <summary>
/// Writes manifests in the reader's format: one compact JSON object a line, "\n" line ends,
/// UTF-8 without BOM, fields id, task, image, prompt, expected, object_box, then metadata.
/// The same examples always give the same bytes.
/// </summary>
public static class ManifestWriter
{
    /// <summary>Keeps "&lt;image&gt;" and non-ASCII text readable instead of \u003C escapes.</summary>
    internal static readonly JavaScriptEncoder Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    public static void Write(string path, IEnumerable<ManifestExample> examples)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(examples);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);

        var sb = new StringBuilder();
        foreach (var ex in examples)
            sb.Append(ToJsonLine(ex, dir)).Append('\n');
        File.WriteAllText(full, sb.ToString(), new UTF8Encoding(false));
    }

    /// <summary>One manifest line (no newline); image paths are made relative to <paramref name="manifestDir"/>.</summary>
    public static string ToJsonLine(ManifestExample ex, string manifestDir)
    {
        ArgumentNullException.ThrowIfNull(ex);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = Encoder }))
        {
            w.WriteStartObject();
            w.WriteString(ManifestFields.Id, ex.Id);
            w.WriteString(ManifestFields.Task, ex.Task);
            string? image = RelativeImage(ex, manifestDir);
            if (image != null)
                w.WriteString(ManifestFields.Image, image);
            w.WriteString(ManifestFields.Prompt, ex.Prompt);
            if (ex.Expected != null)
                w.WriteString(ManifestFields.Expected, ex.Expected);
            if (ex.ObjectBox != null)
            {
                w.WriteStartArray(ManifestFields.ObjectBox);
                foreach (double v in ex.ObjectBox)
                    w.WriteNumberValue(v);
                w.WriteEndArray();
            }
            WriteMetadata(w, ex);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static string? RelativeImage(ManifestExample ex, string manifestDir)
    {
        if (ex.ImagePath == null)
            return ex.ImageRelative?.Replace('\\', '/');
        // Re-derive from the absolute path so a manifest written elsewhere still points at the image.
        string rel = Path.GetRelativePath(manifestDir, ex.ImagePath).Replace('\\', '/');
        if (ManifestReader.IsAbsolute(rel) || rel == ".." || rel.StartsWith("../", StringComparison.Ordinal))
            throw new ArgumentException(
                $"Example '{ex.Id}': image '{ex.ImagePath}' is outside the manifest's folder '{manifestDir}'; "
                + "the reader only accepts images inside it (copy the images next to the manifest).");
        return rel;
    }

    private static void WriteMetadata(Utf8JsonWriter w, ManifestExample ex)
    {
        if (string.IsNullOrWhiteSpace(ex.MetadataJson))
            return;
        using var doc = JsonDocument.Parse(ex.MetadataJson);
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new ArgumentException($"Example '{ex.Id}': MetadataJson must be a JSON object.");
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (ManifestFields.Known.Contains(p.Name))
                throw new ArgumentException($"Example '{ex.Id}': metadata field '{p.Name}' clashes with a manifest field.");
            p.WriteTo(w);
        }
    }
}
