using System.Text.Json;

namespace LlavaMech.Datasets.Manifest;

/// <summary>One object of a drawn scene: its shape, colour word and pixel box [x0, y0, x1, y1).</summary>
public sealed record SceneObject(string Shape, string Color, double[] Box);

/// <summary>
/// The objects of a scene as the colour world's generators write them in an example's metadata (<c>objects</c>: a list of
/// {shape, color, box}, the asked object first). Other manifests have none.
/// </summary>
public static class SceneObjects
{
    /// <summary>The example's objects, the asked one first; empty when its metadata has no well-formed object list.</summary>
    public static IReadOnlyList<SceneObject> Of(ManifestExample e)
    {
        try
        {
            using var doc = JsonDocument.Parse(e.MetadataJson);
            if (!doc.RootElement.TryGetProperty("objects", out var list) || list.ValueKind != JsonValueKind.Array) return [];
            var objects = new List<SceneObject>();
            foreach (var o in list.EnumerateArray())
            {
                if (o.ValueKind != JsonValueKind.Object || !o.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.String
                    || !o.TryGetProperty("color", out var color) || color.ValueKind != JsonValueKind.String
                    || !o.TryGetProperty("box", out var box) || box.ValueKind != JsonValueKind.Array || box.GetArrayLength() != 4
                    || box.EnumerateArray().Any(v => v.ValueKind != JsonValueKind.Number))
                    return [];
                objects.Add(new SceneObject(shape.GetString()!, color.GetString()!, box.EnumerateArray().Select(v => v.GetDouble()).ToArray()));
            }
            return objects;
        }
        catch (JsonException)
        {
            return [];
        }
    }
}
