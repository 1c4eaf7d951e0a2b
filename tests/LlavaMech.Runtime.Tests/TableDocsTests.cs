using LlavaMech.Testing;
using System.Text.RegularExpressions;
using LlavaMech.Runtime.Stats;
using LlavaMech.Storage;

namespace LlavaMech.Runtime.Tests;

/// <summary>The tables are declared once, by their row types; TABLES.md documents each of their columns.</summary>
public class TableDocsTests
{
    [Fact]
    public void Every_column_of_every_shard_table_is_documented_with_its_type()
    {
        var doc = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "src", "LlavaMech.Storage", "TABLES.md"));
        foreach (var table in StatisticCatalog.ShardTables)
        {
            var section = Regex.Match(doc, $@"### `{table.Name}`[^\n]*\n(?<body>(?:(?!\n### )[\s\S])*)");
            Assert.True(section.Success, $"TABLES.md has no section for table '{table.Name}'");
            var body = section.Groups["body"].Value;
            foreach (var field in table.Schema.DataFields.Skip(2))   // run_id and model_fingerprint: documented once for all
            {
                Assert.True(body.Contains($"`{field.Name}`"), $"TABLES.md, table '{table.Name}': column '{field.Name}' is not documented");
                if (field.IsNullable)
                {
                    var line = body.Split('\n').First(l => l.Contains($"`{field.Name}`"));
                    Assert.True(line.Contains("nullable"), $"TABLES.md, table '{table.Name}': column '{field.Name}' is nullable, the doc does not say so");
                }
            }
        }
    }

    [Fact]
    public void Row_types_give_the_v1_schemas_column_for_column()
    {
        // The schemas the tables had before they were derived from the row types: names, order, nullability.
        var expected = new Dictionary<string, string>
        {
            ["examples"] = "example_id task prompt target_id target_token target_prob expected? correct? seq_len num_image_tokens metadata",
            ["layer_stats"] = "example_id layer component log_prob_increase",
            ["head_stats"] = "example_id layer head log_prob_increase attn_to_image?",
            ["position_stats"] = "example_id layer head position is_image image_part? patch_row? patch_col? log_prob_increase attn_weight",
            ["neuron_stats"] = "example_id layer neuron log_prob_increase coefficient",
            ["logit_lens"] = "example_id position image_part? patch_row? patch_col? rank token_id token",
            ["rejects"] = "line reason raw raw_bytes raw_sha256",
        };
        foreach (var table in StatisticCatalog.ShardTables.Where(t => expected.ContainsKey(t.Name)))
        {
            var fields = table.Schema.DataFields;
            Assert.Equal(["run_id", "model_fingerprint"], fields.Take(2).Select(f => f.Name));
            Assert.Equal(expected[table.Name], string.Join(' ', fields.Skip(2).Select(f => f.Name + (f.IsNullable ? "?" : ""))));
        }
        Assert.Equal(expected.Count, StatisticCatalog.ShardTables.Count(t => expected.ContainsKey(t.Name)));
    }
}
