using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlavaMech.Viewer;

/// <param name="Run">the run's output location: a folder, az://container/prefix or an https blob URL.</param>
/// <param name="Host">the address to bind; loopback unless told otherwise.</param>
/// <param name="Port">0: a free port.</param>
/// <param name="Model">a LLaVA checkpoint folder for <c>/explain</c>; null: no /explain.</param>
public sealed record ViewerOptions(string Run, string Host = "127.0.0.1", int Port = 8080, string? Model = null);

/// <summary>
/// The run viewer: Kestrel with minimal APIs over one run (<see cref="RunSource"/>). Read-only: GET only; no static-file
/// middleware (assets are embedded resources served by name); the only file it opens on request is an image the run's
/// manifest references, looked up by example id; a request whose target holds <c>..</c> (encoded or not), a backslash
/// or an encoded slash is refused with 400; every query size is capped.
/// </summary>
public sealed class ViewerServer : IAsyncDisposable
{
    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly WebApplication _app;
    private readonly RunSource _run;

    private ViewerServer(WebApplication app, RunSource run, Uri address)
    {
        _app = app;
        _run = run;
        Address = address;
    }

    /// <summary>Where it listens (the real port when 0 was asked).</summary>
    public Uri Address { get; }

    /// <summary>Whether <paramref name="host"/> is a loopback address (else the caller warns: the viewer has no authentication).</summary>
    public static bool IsLoopback(string host) =>
        host is "localhost" || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));

    public static async Task<ViewerServer> StartAsync(ViewerOptions options, CancellationToken ct = default)
    {
        if (!IPAddress.TryParse(options.Host == "localhost" ? "127.0.0.1" : options.Host, out var ip))
            throw new ArgumentException($"--host {options.Host}: give an IP address (127.0.0.1, ::1, 0.0.0.0)");
        var run = await RunSource.OpenAsync(options.Run, ct).ConfigureAwait(false);
        ExplainService? explain = null;
        try
        {
            if (options.Model is { } modelDir) explain = ExplainService.Load(modelDir);
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k =>
            {
                k.AddServerHeader = false;
                k.Limits.MaxRequestBodySize = explain is null ? 0 : ExplainService.MaxImageBytes + 64 * 1024;
                k.Limits.MaxRequestLineSize = 8 * 1024;
                k.Listen(ip, options.Port);
            });
            builder.Services.AddSingleton(new RunQueries(run));
            builder.Services.AddSingleton(new RunComparisons(run));
            builder.Services.AddSingleton(new ExplainHolder(explain));
            var app = builder.Build();
            Map(app);
            // Warm up before listening: the front page's aggregates are computed once per set of committed parts.
            var queries = app.Services.GetRequiredService<RunQueries>();
            _ = Pages.Index(await queries.OverviewAsync(ct).ConfigureAwait(false));
            if ((await queries.ExamplesAsync(new ExampleFilter(Limit: 1), ct).ConfigureAwait(false)).Items is [var first, ..] &&
                await queries.ExampleAsync(first.ExampleId, ct).ConfigureAwait(false) is { } warm)
                _ = Pages.Example(run.RunId, warm);
            await app.StartAsync(ct).ConfigureAwait(false);
            var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            var uri = new Uri(bound.Replace("0.0.0.0", "127.0.0.1").Replace("[::]", "[::1]"));
            return new ViewerServer(app, run, uri);
        }
        catch
        {
            explain?.Dispose();
            await run.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The /explain service when serve has --model (a holder, so that the app can ask for it either way).</summary>
    internal sealed record ExplainHolder(ExplainService? Service);

    public Task WaitForShutdownAsync(CancellationToken ct) => _app.WaitForShutdownAsync(ct);

    /// <summary>The <c>serve</c> command: starts, says where it listens, serves until SIGINT/SIGTERM or <paramref name="ct"/>; returns the exit code.</summary>
    public static async Task<int> ServeAsync(ViewerOptions options, Action<string> say, CancellationToken ct)
    {
        await using var server = await StartAsync(options, ct).ConfigureAwait(false);
        say($"llavamech serve: {options.Run} (run {server._run.RunId}, {server._run.CommittedShards} committed shards) at {server.Address}  (Ctrl+C stops)");
        await server.WaitForShutdownAsync(ct).ConfigureAwait(false);
        say("llavamech serve: stopped");
        return 0;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        var explain = _app.Services.GetRequiredService<ExplainHolder>().Service;
        await _app.DisposeAsync().ConfigureAwait(false);
        explain?.Dispose();
        await _run.DisposeAsync().ConfigureAwait(false);
    }

    private static void Map(WebApplication app)
    {
        app.Use(async (ctx, next) =>
        {
            string raw = ctx.Features.Get<IHttpRequestFeature>()?.RawTarget ?? ctx.Request.Path.Value ?? "";
            string path = raw.Split('?')[0];
            if (UnsafePath(path) || UnsafePath(ctx.Request.Path.Value ?? ""))
            {
                ctx.Response.StatusCode = StatusCodes.Status400BadRequest;
                await ctx.Response.WriteAsync("bad request path");
                return;
            }
            // Read-only: GET, except the upload of /explain when serve has a model (same-origin only).
            bool upload = HttpMethods.IsPost(ctx.Request.Method) && ctx.Request.Path == "/explain" &&
                          ctx.RequestServices.GetRequiredService<ExplainHolder>().Service is not null;
            if (!HttpMethods.IsGet(ctx.Request.Method) && !HttpMethods.IsHead(ctx.Request.Method) && !upload)
            {
                ctx.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
                return;
            }
            if (upload && ctx.Request.Headers.Origin is { Count: > 0 } origin && origin.ToString() != $"{ctx.Request.Scheme}://{ctx.Request.Host}")
            {
                ctx.Response.StatusCode = StatusCodes.Status403Forbidden;
                return;
            }
            var h = ctx.Response.Headers;
            h.XContentTypeOptions = "nosniff";
            h.ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'";
            h["Referrer-Policy"] = "same-origin";   // (no-referrer would make browsers send "Origin: null" with the /explain upload)
            await next(ctx);
        });

        app.MapGet("/", async (RunQueries q, CancellationToken ct) => Html(Pages.Index(await q.OverviewAsync(ct))));
        app.MapGet("/examples", async (RunQueries q, HttpRequest req, CancellationToken ct) =>
        {
            if (ParseFilter(req.Query, 50) is not { } f) return Results.BadRequest("bad filter");
            return Html(Pages.Examples(await q.OverviewAsync(ct), f, await q.ExamplesAsync(f, ct)));
        });
        app.MapGet("/examples/{id}", async (string id, RunQueries q, CancellationToken ct) =>
            await q.ExampleAsync(id, ct) is { } d ? Html(Pages.Example(q.Run.RunId, d)) : Results.NotFound());
        app.MapGet("/examples/{id}/image", (string id, RunQueries q) =>
        {
            // The manifest's image of a listed example, never a path from the request.
            if (q.Run.ManifestEntry(id)?.ImagePath is not { } file || !File.Exists(file)) return Results.NotFound();
            string type = Path.GetExtension(file).ToLowerInvariant() switch
            {
                ".png" => "image/png", ".jpg" or ".jpeg" => "image/jpeg", ".gif" => "image/gif", ".webp" => "image/webp", ".bmp" => "image/bmp",
                _ => "application/octet-stream",
            };
            return Results.File(File.OpenRead(file), type);
        });

        app.MapGet("/api/summary", async (RunQueries q, CancellationToken ct) =>
        {
            var o = await q.OverviewAsync(ct);
            return Results.Json(new
            {
                run_id = o.RunId, model_fingerprint = o.ModelFingerprint, model = o.Model, manifest = o.Manifest, finished = o.Finished,
                committed_shards = o.CommittedShards, examples = o.Examples, rejects = o.Rejects, with_expected = o.WithExpected,
                correct = o.Correct, accuracy = o.Accuracy,
                tasks = o.Tasks.Select(t => new { task = t.Task, examples = t.Examples, with_expected = t.WithExpected, correct = t.Correct, accuracy = t.Accuracy }),
                top_heads = o.Tasks.SelectMany(t => o.TopHeads(t.Task, 5)),
                layers = o.Layers, causal = o.Causal,
            }, Json);
        });
        app.MapGet("/api/examples", async (RunQueries q, HttpRequest req, CancellationToken ct) =>
            ParseFilter(req.Query, 100) is { } f ? Results.Json((await q.ExamplesAsync(f, ct)).Items, Json) : Results.BadRequest("bad filter"));
        app.MapGet("/api/examples/{id}", async (string id, RunQueries q, CancellationToken ct) =>
            await q.ExampleAsync(id, ct) is { } d ? Results.Json(d, Json) : Results.NotFound());
        app.MapGet("/api/heads", async (string? task, RunQueries q, CancellationToken ct) =>
            Results.Json(await q.HeadsAsync(string.IsNullOrEmpty(task) ? null : task, ct), Json));

        app.MapGet("/diff", async (string? a, string? b, RunComparisons c, CancellationToken ct) =>
        {
            var runs = await c.RunsAsync(ct);
            var d = await c.CompareAsync(Capped(a), Capped(b), ct);
            return (a ?? b) is not null && d is null ? Results.NotFound("no such completed run in this reanalysis root") : Html(Pages.Diff(runs, d, c.Root));
        });
        app.MapGet("/api/diff", async (string? a, string? b, RunComparisons c, CancellationToken ct) =>
            await c.CompareAsync(Capped(a), Capped(b), ct) is { } d
                ? Results.Json(new { a = d.A.RunId, b = d.B.RunId, tasks = d.Diff.Tasks, heads = d.Diff.Heads, layers = d.Diff.Layers, layer_changes = d.Diff.LayerChanges }, Json)
                : Results.NotFound());

        app.MapGet("/explain", (ExplainHolder h) => h.Service is null
            ? Results.Content(Pages.NoModel(), "text/html; charset=utf-8", statusCode: StatusCodes.Status404NotFound)
            : Html(Pages.ExplainForm(h.Service.ModelDir, null)));
        app.MapPost("/explain", async (HttpRequest req, ExplainHolder h, CancellationToken ct) =>
        {
            if (h.Service is not { } svc) return Results.NotFound();
            if (!req.HasFormContentType) return Results.BadRequest("multipart form expected");
            var form = await req.ReadFormAsync(ct);
            // Browsers send a textarea's line breaks as CRLF (HTML form encoding); prompts use LF.
            string prompt = form["prompt"].ToString().Replace("\r\n", "\n", StringComparison.Ordinal);
            if (form.Files["image"] is not { Length: > 0 and <= ExplainService.MaxImageBytes } file)
                return Html(Pages.ExplainForm(svc.ModelDir, $"an image of at most {ExplainService.MaxImageBytes >> 20} MiB is needed"), StatusCodes.Status400BadRequest);
            try
            {
                await using var stream = file.OpenReadStream();
                var (id, _) = await svc.ExplainAsync(stream, Path.GetExtension(file.FileName).ToLowerInvariant(), prompt, ct);
                return Results.Redirect("/explain/" + id);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException)
            {
                return Html(Pages.ExplainForm(svc.ModelDir, e.Message), StatusCodes.Status400BadRequest);
            }
        });
        app.MapGet("/explain/{id}", (string id, ExplainHolder h) =>
            h.Service?.Explained(id) is { } json ? Html(Pages.Explained(id, json)) : Results.NotFound());
        app.MapGet("/explain/{id}/image", (string id, ExplainHolder h) =>
            h.Service?.ImagePath(id) is { } file ? Results.File(File.OpenRead(file), file.EndsWith(".png", StringComparison.Ordinal) ? "image/png" : "image/jpeg") : Results.NotFound());
        app.MapGet("/api/explain/{id}/ablate", async (string id, string? heads, ExplainHolder h, CancellationToken ct) =>
        {
            if (h.Service is not { } svc) return Results.NotFound();
            if (heads is null || heads.Length > 200 || !System.Text.RegularExpressions.Regex.IsMatch(heads, @"^\d{1,4}\.\d{1,4}(,\d{1,4}\.\d{1,4})*$"))
                return Results.BadRequest("heads: L.H,L.H,..");
            try
            {
                return await svc.AblateAsync(id, heads, ct) is { } r
                    ? Results.Json(new
                    {
                        heads, target_token = r.TargetToken, clean_logprob = r.CleanLogProb, edit_logprob = r.EditLogProb, delta = r.Delta, flipped = r.Flipped,
                        clean_prob = Math.Exp(r.CleanLogProb), edit_prob = Math.Exp(r.EditLogProb), edit_top = r.EditTop5.Select(t => new { token = t.Token, prob = t.Prob }),
                    }, Json)
                    : Results.NotFound();
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException) { return Results.BadRequest(e.Message); }
        });

        app.MapGet("/assets/{name}", (string name) =>
            Asset(name) is { } a ? Results.Bytes(a.Bytes, a.Type) : Results.NotFound());
    }

    /// <summary>A filter from the query string, with every size capped; null when a value is malformed.</summary>
    internal static ExampleFilter? ParseFilter(IQueryCollection query, int defaultLimit)
    {
        static string? S(IQueryCollection q, string k) => q.TryGetValue(k, out var v) && !string.IsNullOrEmpty(v.ToString()) ? v.ToString() : null;
        int limit = defaultLimit, offset = 0;
        if (S(query, "limit") is { } l && !int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out limit)) return null;
        if (S(query, "offset") is { } o && !int.TryParse(o, NumberStyles.None, CultureInfo.InvariantCulture, out offset)) return null;
        bool? correct = null;
        if (S(query, "correct") is { } c)
        {
            if (c is "true" or "1") correct = true;
            else if (c is "false" or "0") correct = false;
            else return null;
        }
        string? Capped(string k) => S(query, k) is { } v ? v[..Math.Min(v.Length, ExampleFilter.MaxText)] : null;
        return new ExampleFilter(Capped("task"), correct, Capped("target"), Capped("q"),
            Math.Clamp(limit, 1, ExampleFilter.MaxLimit), Math.Clamp(offset, 0, ExampleFilter.MaxOffset));
    }

    private static string? Capped(string? s) => string.IsNullOrEmpty(s) ? null : s[..Math.Min(s.Length, ExampleFilter.MaxText)];

    internal static bool UnsafePath(string path)
    {
        string p = path.ToLowerInvariant();
        return p.Contains("..") || p.Contains('\\') || p.Contains("%2e") || p.Contains("%2f") || p.Contains("%5c") || p.Contains("%00") || p.Contains('\0');
    }

    private static readonly Dictionary<string, (byte[] Bytes, string Type)> Assets = LoadAssets();

    private static (byte[] Bytes, string Type)? Asset(string name) => Assets.TryGetValue(name, out var a) ? a : null;

    private static Dictionary<string, (byte[], string)> LoadAssets()
    {
        var asm = typeof(ViewerServer).Assembly;
        const string prefix = "LlavaMech.Viewer.Assets.";
        var result = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        foreach (var res in asm.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)))
        {
            using var s = asm.GetManifestResourceStream(res)!;
            using var m = new MemoryStream();
            s.CopyTo(m);
            string name = res[prefix.Length..];
            result[name] = (m.ToArray(), Path.GetExtension(name) switch { ".js" => "text/javascript; charset=utf-8", ".css" => "text/css; charset=utf-8", _ => "application/octet-stream" });
        }
        return result;
    }

    private static IResult Html(string html, int status = StatusCodes.Status200OK) => Results.Content(html, "text/html; charset=utf-8", statusCode: status);
}
