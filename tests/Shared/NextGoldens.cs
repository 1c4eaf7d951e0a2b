using System.Text.Json;

namespace LlavaMech.Testing;

/// <summary>
/// The tiny LLaVA-NeXT fixture's golden cases (transformers 4.56) as a dataset: a wide, a tall and a near-square image and
/// a text-only prompt, and what the tables of a run over them must say of each image position's part.
/// </summary>
public static class NextGoldens
{
    public const string Model = "tiny-llava-next-vicuna";

    public static readonly string[] Cases = ["wide_circle", "tall_triangle", "square_near", "text_banana"];

    public static JsonElement Golden(string caseId) => JsonDocument.Parse(File.ReadAllText(Fixtures.File(Model, $"golden_{caseId}.json"))).RootElement;

    /// <summary>The case's image file name, or null for the text-only case.</summary>
    public static string? Image(string caseId) =>
        Golden(caseId).GetProperty("image") is { ValueKind: JsonValueKind.String } image ? image.GetString() : null;

    /// <summary>Writes <paramref name="dir"/>/manifest.jsonl, one example per case (vqa with its image copied beside it, tqa
    /// without) under the case's id and golden prompt, and returns its path.</summary>
    public static string WriteManifest(string dir)
    {
        Directory.CreateDirectory(dir);
        var lines = new List<string>();
        foreach (var c in Cases)
        {
            string? image = Image(c);
            if (image is not null) File.Copy(Fixtures.File(Model, image), Path.Combine(dir, image), overwrite: true);
            lines.Add(JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["id"] = c, ["task"] = image is null ? "tqa" : "vqa", ["image"] = image, ["prompt"] = Golden(c).GetProperty("prompt").GetString(),
            }));
        }
        string path = Path.Combine(dir, "manifest.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    /// <summary>
    /// For each image case, what the run's tables must hold by the reference layout, as (what, expected, SQL for DuckDB):
    /// one top head's position_stats rows are its base positions, R' x C' grid positions (rows 0..R'-1) and R' newlines
    /// (after the last grid column), and the logit lens covers all N image positions. <paramref name="table"/> maps a table
    /// name to its read_parquet(...) expression.
    /// </summary>
    public static IEnumerable<(string What, long Expected, string Sql)> LayoutChecks(Func<string, string> table)
    {
        foreach (var c in Cases.Where(c => Image(c) is not null))
        {
            var g = Golden(c);
            var kept = g.GetProperty("unpadded_grid_rows_cols");
            int rows = kept[0].GetInt32(), cols = kept[1].GetInt32();
            string head = $"from {table("position_stats")} where example_id = '{c}' and (layer, head) = " +
                          $"(select (layer, head) from {table("position_stats")} where example_id = '{c}' limit 1)";
            yield return ($"{c} base positions", g.GetProperty("base_tokens").GetInt32(), $"select count(*) {head} and image_part = 'base'");
            yield return ($"{c} newline positions", g.GetProperty("newline_tokens").GetInt32(), $"select count(*) {head} and image_part = 'newline'");
            yield return ($"{c} grid positions", rows * cols, $"select count(*) {head} and image_part = 'grid'");
            yield return ($"{c} last grid row", rows - 1, $"select max(patch_row) {head} and image_part = 'grid'");
            yield return ($"{c} newline column", cols, $"select min(patch_col) {head} and image_part = 'newline'");
            yield return ($"{c} lens positions", g.GetProperty("n_image_tokens").GetInt32(),
                $"select count(distinct position) from {table("logit_lens")} where example_id = '{c}'");
            yield return ($"{c} target", g.GetProperty("target_id").GetInt64(), $"select target_id from {table("examples")} where example_id = '{c}'");
            yield return ($"{c} sequence length", g.GetProperty("seq_len").GetInt64(), $"select seq_len from {table("examples")} where example_id = '{c}'");
        }
    }
}
