using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using LlavaMech.Testing;
using Microsoft.Playwright;

namespace LlavaMech.Viewer.Tests;

/// <summary>
/// <c>serve --model</c>: an image uploaded in the browser is explained; a clicked head is zero-ablated and the answer's
/// probability moves by what <c>llavamech intervene</c> computes for the same input.
/// </summary>
[Collection(ViewerCollection.Name)]
public sealed class ExplainTests(ViewerFixture fx) : IClassFixture<BrowserFixture>
{
    private static string Toy => Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "toy-llava");
    private static string Image => Path.Combine(Fixtures.RepoRoot, "datasets", "shapes-colors-mini", "images", "shapes-00004.png");
    private const string Prompt = "USER: <image>\nWhat is the color of the circle?\nASSISTANT: The color of the circle is";

    [Fact]
    public async Task Upload_explain_and_ablate_a_head_in_the_browser()
    {
        await using var server = await ViewerServer.StartAsync(new ViewerOptions(fx.RunDir, "127.0.0.1", 0, Toy));
        var browser = new BrowserFixture();
        await browser.InitializeAsync();
        try
        {
            var page = await browser.Browser.NewPageAsync(new BrowserNewPageOptions { BaseURL = server.Address.ToString() });
            page.SetDefaultTimeout(120_000);   // a model pass per upload and per click, on a shared 2-core machine
            page.SetDefaultNavigationTimeout(120_000);
            var log = new List<string>();
            page.Response += (_, r) => log.Add($"{r.Status} {r.Request.Method} {r.Url}");
            page.RequestFailed += (_, r) => log.Add($"FAILED {r.Method} {r.Url}: {r.Failure}");
            await page.GotoAsync("/explain");
            await page.SetInputFilesAsync("input[name=image]", Image);
            await page.FillAsync("textarea[name=prompt]", Prompt);
            await page.ClickAsync("#explain-form button[type=submit]");
            try { await page.WaitForURLAsync(new System.Text.RegularExpressions.Regex("/explain/[0-9a-f]{32}$")); }
            catch (TimeoutException) { Assert.Fail("no explanation page: " + string.Join(" | ", log)); }

            // explain's answer on this image (README: ' orange', p = 0.998); its top head is L0H3.
            var cli = ViewerFixture.Cli("intervene", "--model", Toy, "--image", Image, "--prompt", Prompt, "--ablate-heads", "0.3", "--json");
            Assert.Equal(0, cli.ExitCode);
            var expected = JsonNode.Parse(cli.Stdout)!;
            Assert.Equal(((string)expected["target_token"]!).Trim(), (await page.TextContentAsync("#target-token"))!.Trim());
            Assert.Equal(Math.Exp((double)expected["clean_logprob"]!), double.Parse((await page.GetAttributeAsync("#target-prob", "data-value"))!, CultureInfo.InvariantCulture), 4);
            Assert.Equal(ViewerFixture.ToyHeads, await page.Locator("#explain-heads rect.cell").CountAsync());

            await page.ClickAsync("#explain-heads rect.cell[data-layer=\"0\"][data-head=\"3\"]");
            await page.WaitForSelectorAsync("#ablation[data-state=done]");
            double delta = double.Parse((await page.GetAttributeAsync("#ablation", "data-delta"))!, CultureInfo.InvariantCulture);
            Assert.Equal((double)expected["delta"]!, delta, 6);
            Assert.True(delta < -0.01, $"ablating the top head should lower log p(target), got {delta}");
            Assert.Contains("L0.H3 zero-ablated", await page.TextContentAsync("#ablation"));
        }
        finally { await browser.DisposeAsync(); }
    }

    [Fact]
    public async Task Explain_refuses_what_it_should()
    {
        // Without --model: no /explain, and no POST anywhere.
        var plain = await fx.Http.GetAsync("/explain");
        Assert.Equal(HttpStatusCode.NotFound, plain.StatusCode);
        Assert.Contains("--model", await plain.Content.ReadAsStringAsync());
        using (var post = await fx.Http.PostAsync("/explain", new MultipartFormDataContent()))
            Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);

        await using var server = await ViewerServer.StartAsync(new ViewerOptions(fx.RunDir, "127.0.0.1", 0, Toy));
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = server.Address };
        MultipartFormDataContent Form(string prompt, string fileName = "x.png")
        {
            var form = new MultipartFormDataContent { { new StringContent(prompt), "prompt" } };
            form.Add(new ByteArrayContent(File.ReadAllBytes(Image)), "image", fileName);
            return form;
        }
        // Another site's page may not post here.
        using (var req = new HttpRequestMessage(HttpMethod.Post, "/explain") { Content = Form(Prompt) })
        {
            req.Headers.Add("Origin", "http://evil.example");
            using var r = await http.SendAsync(req);
            Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
        }
        using (var noImageToken = await http.PostAsync("/explain", Form("USER: what colour?\nASSISTANT:")))
            Assert.Equal(HttpStatusCode.BadRequest, noImageToken.StatusCode);
        using (var notImage = await http.PostAsync("/explain", Form(Prompt, "x.svg")))
            Assert.Equal(HttpStatusCode.BadRequest, notImage.StatusCode);
        using var ok = await http.PostAsync("/explain", Form(Prompt.Replace("What is", "<script>window.__x=1</script> What is")));
        Assert.Equal(HttpStatusCode.Redirect, ok.StatusCode);
        string id = ok.Headers.Location!.ToString().Split('/')[^1];
        using (var bad = await http.GetAsync($"/api/explain/{id}/ablate?heads=0.2;rm"))
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        using (var unknown = await http.GetAsync("/api/explain/0123/ablate?heads=0.2"))
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        var res = JsonNode.Parse(await http.GetStringAsync($"/api/explain/{id}/ablate?heads=0.2,1.1"))!;
        Assert.True((double)res["edit_logprob"]! < (double)res["clean_logprob"]!);
    }
}
