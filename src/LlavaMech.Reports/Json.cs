using System.Numerics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace LlavaMech.Reports;

/// <summary>
/// The JSON of every machine-readable output of the CLI (<c>--json</c> of forward, explain, inspect, bench; <c>explain.json</c>):
/// one policy for numbers that are not finite (NaN, +-infinity, from an fp16 overflow or a corrupt weight): they are
/// written as <c>null</c>, so the output stays valid JSON and every numeric field holds a number or null, never a string.
/// </summary>
public static class Json
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = false,
        // Field names are the records' property names in snake_case (pandas, DuckDB, jq), declared once by the policy.
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new NonFiniteAsNull<double>(), new NonFiniteAsNull<float>() },
    };

    public static readonly JsonSerializerOptions Indented = new(Options) { WriteIndented = true };

    /// <summary>
    /// A command's result under the policy: a record (its doubles and floats through the converters), or a JSON tree
    /// (<see cref="JsonNode"/>, whose number values the converters never see: its non-finite numbers become null, in
    /// place, before it is written).
    /// </summary>
    public static string Serialize<T>(T value, bool indented = false) => value is JsonNode node
        ? (NullNonFinite(node)?.ToJsonString(indented ? Indented : Options) ?? "null")
        : JsonSerializer.Serialize(value, indented ? Indented : Options);

    /// <summary>Replaces every non-finite number in <paramref name="node"/> by null (in place); returns the node, or null when it is one.</summary>
    public static JsonNode? NullNonFinite(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var key in o.Select(kv => kv.Key).ToList())
                    if (NullNonFinite(o[key]) is null && o[key] is not null) o[key] = null;
                return o;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++)
                    if (NullNonFinite(a[i]) is null && a[i] is not null) a[i] = null;
                return a;
            case JsonValue v when IsNonFinite(v):
                return null;
            default:
                return node;
        }
    }

    private static bool IsNonFinite(JsonValue v) =>
        (v.TryGetValue<double>(out var d) && !double.IsFinite(d)) || (v.TryGetValue<float>(out var f) && !float.IsFinite(f));

    /// <summary>Writes a non-finite double or float as null; reads null back as NaN.</summary>
    private sealed class NonFiniteAsNull<T> : JsonConverter<T> where T : struct, IFloatingPoint<T>
    {
        public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            reader.TokenType == JsonTokenType.Null ? T.CreateChecked(double.NaN) : T.CreateChecked(reader.GetDouble());

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options)
        {
            double d = double.CreateChecked(value);
            if (!double.IsFinite(d)) writer.WriteNullValue();
            else if (typeof(T) == typeof(float)) writer.WriteNumberValue(float.CreateChecked(value));
            else writer.WriteNumberValue(d);
        }

        public override bool HandleNull => true;
    }
}
