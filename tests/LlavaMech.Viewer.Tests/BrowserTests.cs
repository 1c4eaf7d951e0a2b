using System.Diagnostics;
using System.Globalization;
using LlavaMech.Testing;
using Microsoft.Playwright;

namespace LlavaMech.Viewer.Tests;

/// <summary>
/// Debian's chromium, headless, driven by Microsoft.Playwright through <c>ExecutablePath</c> (no browser download):
/// installed by <c>deploy/chromium/install.sh</c> when missing (as Azurite is for the storage tests), or named by
/// <c>LLAVAMECH_CHROMIUM</c>.
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    public IPlaywright Playwright { get; private set; } = null!;
    public IBrowser Browser { get; private set; } = null!;

    public static string ChromiumPath()
    {
        if (Environment.GetEnvironmentVariable("LLAVAMECH_CHROMIUM") is { Length: > 0 } env) return env;
        const string debian = "/usr/bin/chromium";
        if (!File.Exists(debian))
        {
            var psi = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardError = true };
            psi.ArgumentList.Add(Path.Combine(Fixtures.RepoRoot, "deploy", "chromium", "install.sh"));
            using var p = Process.Start(psi)!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0) throw new InvalidOperationException("deploy/chromium/install.sh failed: " + err);
        }
        return debian;
    }

    public async Task InitializeAsync()
    {
        Playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        Browser = await Playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath(),
            Headless = true,
            // Root in a container: chromium's sandbox needs user namespaces that such machines often lack.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null) await Browser.DisposeAsync();
        Playwright?.Dispose();
    }
}

/// <summary>The pages in a real browser: the rendered DOM shows the run's numbers (DuckDB reads), head clicks move the overlay, run text stays text.</summary>
[Collection(ViewerCollection.Name)]
public sealed class BrowserTests(ViewerFixture fx, BrowserFixture browser) : IClassFixture<BrowserFixture>, IAsyncLifetime
{
    private IBrowserContext _context = null!;
    private IPage _page = null!;
    private readonly List<string> _consoleErrors = [];

    public async Task InitializeAsync()
    {
        _context = await browser.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = fx.Address.ToString() });
        _context.SetDefaultTimeout(90_000);   // a shared 2-core machine under a parallel build
        _page = await _context.NewPageAsync();
        _page.Console += (_, m) => { if (m.Type == "error") _consoleErrors.Add(m.Text); };
        _page.PageError += (_, e) => _consoleErrors.Add(e);
    }

    public async Task DisposeAsync() => await _context.DisposeAsync();

    private static double Num(string? s) => double.Parse(s!, CultureInfo.InvariantCulture);

    [Fact]
    public async Task Front_page_shows_the_runs_numbers()
    {
        await _page.GotoAsync("/");
        var counts = fx.Query("SELECT task, count(*), count(correct), sum(CASE WHEN correct THEN 1 ELSE 0 END) FROM {examples} GROUP BY task ORDER BY task");
        Assert.Equal("13", (await _page.TextContentAsync("#n-examples"))!.Trim());
        Assert.Equal("0", (await _page.TextContentAsync("#n-rejects"))!.Trim());
        Assert.Equal((string)fx.Query("SELECT DISTINCT model_fingerprint FROM {examples}")[0][0]!, (await _page.TextContentAsync("#model-fingerprint"))!.Trim());
        foreach (var r in counts)
        {
            var row = _page.Locator($"#tasks tr[data-task=\"{r[0]}\"]");
            Assert.Equal(Convert.ToInt64(r[1]).ToString(CultureInfo.InvariantCulture), (await row.Locator(".n-examples").TextContentAsync())!.Trim());
            double acc = ViewerFixture.D(r[3]) / ViewerFixture.D(r[2]);
            Assert.Equal((acc * 100).ToString("F1", CultureInfo.InvariantCulture) + "%", (await row.Locator(".accuracy").TextContentAsync())!.Trim());
        }
        // Head grid per task, side by side: every cell's value is the DuckDB mean of that head over the task.
        var means = fx.Query("""
            SELECT e.task, h.layer, h.head, avg(h.log_prob_increase) FROM {head_stats} h JOIN {examples} e USING (example_id)
            GROUP BY ALL ORDER BY ALL
            """);
        Assert.Equal(2 * ViewerFixture.ToyHeads, means.Count);
        foreach (var m in means)
        {
            var cell = _page.Locator($"svg#grid-{m[0]} rect.cell[data-layer=\"{m[1]}\"][data-head=\"{m[2]}\"]");
            Assert.Equal(ViewerFixture.D(m[3]), Num(await cell.GetAttributeAsync("data-value")), 12);
        }
        // Cells are one size (the grid's columns line up with their tick labels).
        var widths = await _page.EvalOnSelectorAllAsync<double[]>("svg#grid-vqa rect.cell", "els => els.map(e => e.getBoundingClientRect().width)");
        Assert.Equal(ViewerFixture.ToyHeads, widths.Length);
        Assert.All(widths, w => Assert.Equal(widths[0], w, 3));
        // Top head of vqa first in its table.
        var top = means.Where(m => (string)m[0]! == "vqa").OrderByDescending(m => ViewerFixture.D(m[3])).First();
        var first = _page.Locator("section.task[data-task=vqa] table.top-heads tbody tr").First;
        Assert.Equal($"{top[1]}", await first.GetAttributeAsync("data-layer"));
        Assert.Equal($"{top[2]}", await first.GetAttributeAsync("data-head"));
        Assert.Empty(_consoleErrors);
    }

    [Fact]
    public async Task Clicking_a_head_changes_the_overlay()
    {
        string id = (string)fx.Query("SELECT example_id FROM {examples} WHERE task = 'vqa' AND example_id LIKE 'shapes-%' ORDER BY example_id LIMIT 1")[0][0]!;
        await _page.GotoAsync("/examples/" + id);
        var heads = fx.Query($"SELECT layer, head, sum(log_prob_increase) FROM {{position_stats}} WHERE example_id = '{id}' GROUP BY layer, head");
        var topHead = fx.Query($"SELECT layer, head FROM {{head_stats}} WHERE example_id = '{id}' ORDER BY log_prob_increase DESC, layer, head LIMIT 1")[0];
        Assert.Equal(3, heads.Count);   // --top-heads 3 (the default): position scores for three heads
        var caption = _page.Locator("#overlay-caption");
        Assert.Equal($"head-{topHead[0]}-{topHead[1]}-log", await caption.GetAttributeAsync("data-overlay"));
        string before = await _page.EvalOnSelectorAsync<string>("#overlay", "c => c.toDataURL()");
        // The overlay sums the head's position scores over the patches: the drawn sum is DuckDB's sum over the image positions.
        double drawn = Num(await _page.GetAttributeAsync("#overlay", "data-sum"));
        double expected = ViewerFixture.D(fx.Query($"SELECT sum(log_prob_increase) FROM {{position_stats}} WHERE example_id = '{id}' AND layer = {topHead[0]} AND head = {topHead[1]} AND is_image")[0][0]);
        Assert.Equal(expected, drawn, 9);

        var other = heads.First(h => !(Convert.ToInt32(h[0]) == Convert.ToInt32(topHead[0]) && Convert.ToInt32(h[1]) == Convert.ToInt32(topHead[1])));
        await _page.ClickAsync($"#example-heads rect.cell[data-layer=\"{other[0]}\"][data-head=\"{other[1]}\"]");
        Assert.Equal($"head-{other[0]}-{other[1]}-log", await caption.GetAttributeAsync("data-overlay"));
        Assert.Contains($"head L{other[0]}.H{other[1]}", await caption.TextContentAsync());
        string after = await _page.EvalOnSelectorAsync<string>("#overlay", "c => c.toDataURL()");
        Assert.NotEqual(before, after);
        Assert.Equal("true", await _page.EvalOnSelectorAsync<string>($"#example-heads rect.cell[data-layer=\"{other[0]}\"][data-head=\"{other[1]}\"]", "e => String(e.classList.contains('selected'))"));

        // Raw attention of the same head, then a head without position scores: the overlay is cleared and says why.
        await _page.SelectOptionAsync("#overlay-mode", "attn-top");
        Assert.Equal($"head-{other[0]}-{other[1]}-attn", await caption.GetAttributeAsync("data-overlay"));
        double attnSum = ViewerFixture.D(fx.Query($"SELECT sum(attn_weight) FROM {{position_stats}} WHERE example_id = '{id}' AND layer = {other[0]} AND head = {other[1]} AND is_image")[0][0]);
        Assert.Equal(attnSum, Num(await _page.GetAttributeAsync("#overlay", "data-sum")), 9);
        var without = fx.Query($$"""
            SELECT layer, head FROM {head_stats} WHERE example_id = '{{id}}'
            AND (layer, head) NOT IN (SELECT (layer, head) FROM {position_stats} WHERE example_id = '{{id}}') ORDER BY layer, head LIMIT 1
            """)[0];
        await _page.ClickAsync($"#example-heads rect.cell[data-layer=\"{without[0]}\"][data-head=\"{without[1]}\"]");
        Assert.Contains("no position scores", await caption.TextContentAsync());
        Assert.Empty(_consoleErrors);
    }

    [Fact]
    public async Task Example_page_shows_layers_lens_and_prompt_attention()
    {
        string id = (string)fx.Query("SELECT example_id FROM {examples} WHERE task = 'vqa' AND example_id LIKE 'shapes-%' ORDER BY example_id LIMIT 1")[0][0]!;
        await _page.GotoAsync("/examples/" + id);
        var ex = fx.Query($"SELECT target_token, target_prob FROM {{examples}} WHERE example_id = '{id}'")[0];
        Assert.Equal(ViewerFixture.D(ex[1]), Num(await _page.GetAttributeAsync("#target-prob", "data-value")));
        Assert.Equal(((string)ex[0]!).Trim(), (await _page.TextContentAsync("#target-token"))!.Trim());
        foreach (var l in fx.Query($"SELECT layer, component, log_prob_increase FROM {{layer_stats}} WHERE example_id = '{id}'"))
            Assert.Equal(ViewerFixture.D(l[2]), Num(await _page.GetAttributeAsync($"svg.layer-bars rect.bar[data-layer=\"{l[0]}\"][data-component=\"{l[1]}\"]", "data-value")));
        // Logit lens: 6 x 6 patch grid, each cell the rank-0 token of its image position.
        Assert.Equal(36, await _page.Locator("#lens td").CountAsync());
        var lens = fx.Query($$"""
            SELECT p.patch_row, p.patch_col, l.token FROM {logit_lens} l
            JOIN (SELECT DISTINCT position, patch_row, patch_col FROM {position_stats} WHERE example_id = '{{id}}' AND is_image) p USING (position)
            WHERE l.example_id = '{{id}}' AND l.rank = 0 ORDER BY 1, 2 LIMIT 5
            """);
        foreach (var c in lens)
            Assert.Equal((string)c[2]!, await _page.TextContentAsync($"#lens td[data-row=\"{c[0]}\"][data-col=\"{c[1]}\"]"));
        // The prompt positions carry the selected head's attention.
        int textPositions = Convert.ToInt32(fx.Query($$"""
            SELECT count(*) FROM {position_stats} WHERE example_id = '{{id}}' AND NOT is_image
            AND (layer, head) = (SELECT (layer, head) FROM {head_stats} WHERE example_id = '{{id}}' ORDER BY log_prob_increase DESC, layer, head LIMIT 1)
            """)[0][0]);
        Assert.True(textPositions > 0);
        Assert.Equal(textPositions, await _page.Locator("#text-attention .pos").CountAsync());
        Assert.Equal(3, await _page.Locator("#example-causal tbody tr").CountAsync());
        // The image is the manifest's, and it loaded.
        Assert.True(await _page.EvalOnSelectorAsync<bool>("#image", "i => i.complete && i.naturalWidth > 0"));
    }

    [Fact]
    public async Task Script_in_a_prompt_or_id_is_shown_as_text()
    {
        await _page.GotoAsync("/examples/" + Uri.EscapeDataString(ViewerFixture.HostileId));
        Assert.Contains(ViewerFixture.HostilePromptMarker, await _page.TextContentAsync("#prompt"));
        Assert.Equal(ViewerFixture.HostileId, await _page.TextContentAsync("#example-id"));
        Assert.True(await _page.EvaluateAsync<bool>("() => window.__xss === undefined && window.__xssId === undefined"));
        Assert.Equal(0, await _page.Locator("main img[src=x]").CountAsync());

        await _page.GotoAsync("/examples?q=" + Uri.EscapeDataString("<script>"));
        Assert.Equal("1", await _page.GetAttributeAsync("#count", "data-total"));
        Assert.Contains(ViewerFixture.HostilePromptMarker, await _page.TextContentAsync("#examples td.prompt"));
        Assert.True(await _page.EvaluateAsync<bool>("() => window.__xss === undefined && window.__xssId === undefined"));

        // The text filter box is an attribute: a quote in it stays inside.
        await _page.GotoAsync("/examples?q=" + Uri.EscapeDataString("\"><script>window.__xssQ=1</script>"));
        Assert.True(await _page.EvaluateAsync<bool>("() => window.__xssQ === undefined"));
        Assert.Equal("\"><script>window.__xssQ=1</script>", await _page.InputValueAsync("input[name=q]"));
    }

    [Fact]
    public async Task Wrong_answers_list_is_duckdbs_and_links_to_the_example()
    {
        await _page.GotoAsync("/");
        await _page.ClickAsync("#tasks tr[data-task=vqa] a.wrong");
        var ids = fx.Query("SELECT example_id FROM {examples} WHERE task = 'vqa' AND NOT correct ORDER BY example_id").Select(r => (string)r[0]!).ToList();
        Assert.NotEmpty(ids);
        Assert.Equal(ids, await _page.Locator("#examples tbody tr").EvaluateAllAsync<string[]>("rs => rs.map(r => r.dataset.id)"));
        await _page.Locator("#examples tbody tr a").First.ClickAsync();
        Assert.Equal(ids[0], await _page.TextContentAsync("#example-id"));
        Assert.Equal("no", (await _page.TextContentAsync("#correct"))!.Trim());
    }
}
