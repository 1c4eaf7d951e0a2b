using System.Text.Json.Nodes;
using LlavaMech.Storage;

namespace LlavaMech.Runtime.Stats;

/// <summary>
/// <c>examples</c>: one row per analysed example: its target token and probability, whether the model's argmax is the
/// expected answer's first token, its length and image tokens, and a metadata JSON object (the manifest's metadata plus
/// a "llavamech" object: manifest line, image, object box, the top-5 next tokens, the frozen final-norm scale, the
/// neuron route). Captures nothing beyond the shared analysis.
/// </summary>
public sealed class ExampleSummary : Statistic<ExampleRow>
{
    public override IEnumerable<ExampleRow> Emit(StatisticInput x)
    {
        var (work, s, model) = (x.Work, x.Statistics, x.Model);
        bool? correct = null;
        if (work.Expected is not null && TargetResolver.FirstToken(work.Expected, model.Tokenizer, model.Config.Text.VocabSize) is { } expectedToken)
            correct = s.Top5Ids.Length > 0 && s.Top5Ids[0] == expectedToken;
        yield return new ExampleRow(work.Id, work.Task, work.Prompt, s.TargetId, model.TokenText(s.TargetId), Math.Exp(s.TargetLogProb),
            work.Expected, correct, x.Input.SeqLen, x.Input.ImagePositions.Length, Metadata(x));
    }

    /// <summary>The manifest's metadata object plus a "llavamech" object; a manifest that already has a "llavamech" field keeps its own.</summary>
    private static string Metadata(StatisticInput x)
    {
        var (work, s, model) = (x.Work, x.Statistics, x.Model);
        JsonObject obj;
        try { obj = JsonNode.Parse(string.IsNullOrWhiteSpace(work.MetadataJson) ? "{}" : work.MetadataJson) as JsonObject ?? new JsonObject(); }
        catch (System.Text.Json.JsonException) { obj = new JsonObject(); }
        if (!obj.ContainsKey("llavamech"))
        {
            var top5 = new JsonArray();
            for (int i = 0; i < s.Top5Ids.Length; i++)
                top5.Add(new JsonObject { ["id"] = s.Top5Ids[i], ["token"] = model.TokenText(s.Top5Ids[i]), ["prob"] = s.Top5Probs[i] });
            obj["llavamech"] = new JsonObject
            {
                ["line"] = work.Line,
                ["image"] = work.ImageRelative,
                ["object_box"] = work.ObjectBox is null ? null : new JsonArray(work.ObjectBox.Select(v => (JsonNode)JsonValue.Create(v)).ToArray()),
                ["top5"] = top5,
                ["frozen_scale"] = s.FrozenScale,
                ["neuron_route"] = s.Neurons?.Route.ToString().ToLowerInvariant(),
            };
        }
        return obj.ToJsonString();
    }
}
