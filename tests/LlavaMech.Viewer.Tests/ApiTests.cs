using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace LlavaMech.Viewer.Tests;

/// <summary>The JSON API and the security rules over HTTP, checked against DuckDB reads of the same run.</summary>
[Collection(ViewerCollection.Name)]
public sealed class ApiTests(ViewerFixture fx)
{
    [Fact]
    public async Task Summary_counts_and_accuracy_equal_duckdb()
    {
        var s = await fx.GetJsonAsync("/api/summary");
        var expected = fx.Query("SELECT task, count(*), count(correct), sum(CASE WHEN correct THEN 1 ELSE 0 END) FROM {examples} GROUP BY task ORDER BY task");
        Assert.Equal(13, expected.Sum(r => Convert.ToInt64(r[1])));
        Assert.Equal(13, (long)s["examples"]!);
        Assert.Equal(0, (long)s["rejects"]!);
        Assert.True((bool)s["finished"]!);
        Assert.Equal(64, ((string)s["model_fingerprint"]!).Length);
        var tasks = s["tasks"]!.AsArray();
        Assert.Equal(expected.Select(r => (string)r[0]!), tasks.Select(t => (string)t!["task"]!));
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(Convert.ToInt64(expected[i][1]), (long)tasks[i]!["examples"]!);
            Assert.Equal(Convert.ToInt64(expected[i][3]), (long)tasks[i]!["correct"]!);
            Assert.Equal(ViewerFixture.D(expected[i][3]) / ViewerFixture.D(expected[i][2]), (double)tasks[i]!["accuracy"]!, 12);
        }
        long correct = expected.Sum(r => Convert.ToInt64(r[3]));
        Assert.Equal(correct / 13.0, (double)s["accuracy"]!, 12);
        // The run's causal effects (--causal 2): three selections per task.
        Assert.Equal(fx.Query("SELECT count(DISTINCT (task, selection)) FROM {causal_effects}")[0][0] is { } n ? Convert.ToInt32(n) : -1, s["causal"]!.AsArray().Count);
    }

    [Fact]
    public async Task Examples_filtered_and_paged_equal_duckdb()
    {
        var wrong = await fx.GetJsonAsync("/api/examples?task=vqa&correct=false");
        var expectIds = fx.Query("SELECT example_id FROM {examples} WHERE task = 'vqa' AND NOT correct ORDER BY example_id").Select(r => (string)r[0]!).ToList();
        Assert.Equal(expectIds, wrong.AsArray().Select(e => (string)e!["example_id"]!));

        var page = (await fx.GetJsonAsync("/api/examples?limit=4&offset=3")).AsArray();
        var rows = fx.Query("SELECT example_id, task, target_token, target_prob, expected, correct FROM {examples} ORDER BY example_id LIMIT 4 OFFSET 3");
        Assert.Equal(4, page.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            var e = page[i]!;
            Assert.Equal((string)rows[i][0]!, (string)e["example_id"]!);
            Assert.Equal((string)rows[i][1]!, (string)e["task"]!);
            Assert.Equal((string)rows[i][2]!, (string)e["target_token"]!);
            Assert.Equal(ViewerFixture.D(rows[i][3]), (double)e["target_prob"]!);
            Assert.Equal((string?)rows[i][4], (string?)e["expected"]);
            Assert.Equal((bool?)rows[i][5], (bool?)e["correct"]);
        }

        var byText = (await fx.GetJsonAsync("/api/examples?q=" + Uri.EscapeDataString("<script>"))).AsArray();
        Assert.Equal([ViewerFixture.HostileId], byText.Select(e => (string)e!["example_id"]!));
    }

    [Fact]
    public void Query_sizes_are_capped_and_bad_values_refused()
    {
        ExampleFilter? Parse(string q) => ViewerServer.ParseFilter(Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(q) is var d
            ? new Microsoft.AspNetCore.Http.QueryCollection(d) : null!, 100);
        Assert.Equal(ExampleFilter.MaxLimit, Parse("?limit=1000000")!.Limit);
        Assert.Equal(1, Parse("?limit=0")!.Limit);
        Assert.Equal(ExampleFilter.MaxText, Parse("?q=" + new string('a', 5000))!.Text!.Length);
        Assert.Null(Parse("?limit=-5"));
        Assert.Null(Parse("?correct=maybe"));
    }

    [Fact]
    public async Task Capped_limit_over_http_and_bad_filter_is_400()
    {
        var all = (await fx.GetJsonAsync("/api/examples?limit=99999999")).AsArray();
        Assert.Equal(13, all.Count);
        using var bad = await fx.Http.GetAsync("/api/examples?correct=perhaps");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    [Fact]
    public async Task Example_detail_equals_duckdb_rows()
    {
        string id = (string)fx.Query("SELECT example_id FROM {examples} WHERE task = 'vqa' ORDER BY example_id LIMIT 1")[0][0]!;
        var d = await fx.GetJsonAsync("/api/examples/" + Uri.EscapeDataString(id));
        Assert.Equal(id, (string)d["example"]!["example_id"]!);
        var heads = fx.Query($"SELECT layer, head, log_prob_increase FROM {{head_stats}} WHERE example_id = '{id}' ORDER BY layer, head");
        var got = d["heads"]!.AsArray();
        Assert.Equal(heads.Count, got.Count);
        Assert.Equal(ViewerFixture.ToyHeads, got.Count);   // layers x heads of the toy LLaVA
        for (int i = 0; i < heads.Count; i++)
            Assert.Equal(ViewerFixture.D(heads[i][2]), (double)got[i]!["log_prob_increase"]!);
        var positions = fx.Query($"SELECT count(*), sum(attn_weight) FROM {{position_stats}} WHERE example_id = '{id}'")[0];
        Assert.Equal(Convert.ToInt32(positions[0]), d["positions"]!.AsArray().Count);
        Assert.Equal(ViewerFixture.D(positions[1]), d["positions"]!.AsArray().Sum(p => (double)p!["attn_weight"]!), 9);
        Assert.Equal(2 * ViewerFixture.ToyShape.Layers, d["layers"]!.AsArray().Count);
        Assert.True((bool)d["has_image"]!);
        Assert.Equal(3, d["causal"]!.AsArray().Count);

        using var missing = await fx.Http.GetAsync("/api/examples/no-such-example");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task Heads_per_task_are_duckdb_means()
    {
        var got = (await fx.GetJsonAsync("/api/heads?task=vqa")).AsArray();
        var expected = fx.Query("""
            SELECT h.layer, h.head, avg(h.log_prob_increase), count(*) FROM {head_stats} h JOIN {examples} e USING (example_id)
            WHERE e.task = 'vqa' GROUP BY h.layer, h.head ORDER BY h.layer, h.head
            """);
        Assert.Equal(expected.Count, got.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(Convert.ToInt32(expected[i][0]), (int)got[i]!["layer"]!);
            Assert.Equal(Convert.ToInt32(expected[i][1]), (int)got[i]!["head"]!);
            Assert.Equal(ViewerFixture.D(expected[i][2]), (double)got[i]!["mean_log_prob_increase"]!, 12);
            Assert.Equal(7, (long)got[i]!["n_examples"]!);
        }
        Assert.All(got, h => Assert.Equal("vqa", (string)h!["task"]!));
        Assert.Equal(2 * ViewerFixture.ToyHeads, (await fx.GetJsonAsync("/api/heads")).AsArray().Count);
    }

    [Fact]
    public async Task Image_is_the_manifest_file_of_the_example()
    {
        string id = (string)fx.Query("SELECT example_id FROM {examples} WHERE task = 'vqa' AND example_id LIKE 'shapes-%' ORDER BY example_id LIMIT 1")[0][0]!;
        var bytes = await fx.Http.GetByteArrayAsync($"/examples/{id}/image");
        var manifestLine = File.ReadLines(Path.Combine(fx.DataDir, "manifest.jsonl")).Select(l => JsonNode.Parse(l)!).First(o => (string)o["id"]! == id);
        Assert.Equal(File.ReadAllBytes(Path.Combine(fx.DataDir, (string)manifestLine["image"]!)), bytes);
        // A text-only example has no image; an unknown id has none either.
        string tqa = (string)fx.Query("SELECT example_id FROM {examples} WHERE task = 'tqa' LIMIT 1")[0][0]!;
        using var none = await fx.Http.GetAsync($"/examples/{tqa}/image");
        Assert.Equal(HttpStatusCode.NotFound, none.StatusCode);
    }

    [Theory]
    [InlineData("/examples/../../../../etc/passwd")]
    [InlineData("/examples/..%2F..%2F..%2Fetc%2Fpasswd/image")]
    [InlineData("/examples/%2e%2e/%2e%2e/etc/passwd")]
    [InlineData("/examples/%2E%2E%2F%2E%2E%2Fmanifest.jsonl/image")]
    [InlineData("/assets/..%2f..%2fLlavaMech.Viewer.csproj")]
    [InlineData("/assets/..\\..\\viewer.css")]
    [InlineData("/examples/%252e%252e%252fetc/image")]
    [InlineData("/api/examples/..")]
    public async Task Traversal_is_refused_with_4xx(string target)
    {
        // Raw HTTP/1.1 over a socket: HttpClient would normalise the dot segments before sending.
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(fx.Address.Host, fx.Address.Port);
        using var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {target} HTTP/1.1\r\nHost: {fx.Address.Authority}\r\nConnection: close\r\n\r\n"));
        using var reader = new StreamReader(stream);
        string response = await reader.ReadToEndAsync();
        int status = int.Parse(response.Split(' ')[1]);
        Assert.InRange(status, 400, 499);
        Assert.DoesNotContain("root:", response);
        Assert.DoesNotContain("\"id\"", response);
    }

    [Fact]
    public async Task Read_only_and_assets_embedded()
    {
        using var post = await fx.Http.PostAsync("/api/examples", new StringContent("{}"));
        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
        using var js = await fx.Http.GetAsync("/assets/viewer.js");
        Assert.Equal(HttpStatusCode.OK, js.StatusCode);
        Assert.Contains("textContent", await js.Content.ReadAsStringAsync());
        using var other = await fx.Http.GetAsync("/assets/LlavaMech.Viewer.dll");
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
        Assert.Contains("script-src 'self'", js.Headers.GetValues("Content-Security-Policy").Single());
    }

    [Fact]
    public async Task Prompts_and_ids_are_escaped_in_html()
    {
        string list = await fx.Http.GetStringAsync("/examples?q=" + Uri.EscapeDataString("script"));
        Assert.DoesNotContain(ViewerFixture.HostilePromptMarker, list);
        Assert.Contains("&lt;script&gt;window.__xss=1&lt;/script&gt;", list);
        Assert.DoesNotContain("<img src=x", list);
        string page = await fx.Http.GetStringAsync("/examples/" + Uri.EscapeDataString(ViewerFixture.HostileId));
        Assert.DoesNotContain(ViewerFixture.HostilePromptMarker, page);
        Assert.DoesNotContain("<img src=x", page);
        Assert.Contains("&lt;img src=x onerror=window.__xssId=1&gt;", page);
    }
}
