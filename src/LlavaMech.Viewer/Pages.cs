using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using LlavaMech.Pipeline;
using LlavaMech.Storage;

namespace LlavaMech.Viewer;

/// <summary>
/// The viewer's HTML, rendered on the server: every text from the run (ids, prompts, tokens, paths) goes through
/// <see cref="E"/>, and data for the page's script travels as JSON in a non-executed <c>application/json</c> block
/// whose <c>&lt;</c>, <c>&gt;</c> and <c>&amp;</c> are escaped by the serializer. Numbers carry their exact value in
/// <c>data-value</c> and a rounded one as text.
/// </summary>
internal static class Pages
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>HTML-escapes text (also quotes: safe in attribute values).</summary>
    public static string E(string? s) => HtmlEncoder.Default.Encode(s ?? "");

    public static string F(double v, int digits = 4) => double.IsFinite(v) ? v.ToString("F" + digits, C) : "n/a";
    public static string Pct(double? v) => v is { } x ? (x * 100).ToString("F1", C) + "%" : "n/a";
    public static string R(double v) => v.ToString("R", C);

    /// <summary>
    /// A titled table when <paramref name="rows"/> has any: fixed column names, one row's cells from <paramref name="cells"/>
    /// (formatted invariantly; run text must go through <see cref="E"/>).
    /// </summary>
    private static void Table<T>(StringBuilder b, string title, string id, string[] columns, IReadOnlyCollection<T> rows, Func<T, FormattableString> cells)
    {
        if (rows.Count == 0) return;
        b.Append(C, $"<h2>{title}</h2><table id=\"{id}\"><thead><tr>{string.Concat(columns.Select(c => $"<th>{c}</th>"))}</tr></thead><tbody>");
        foreach (var row in rows) b.Append("<tr>").Append(cells(row).ToString(C)).Append("</tr>");
        b.Append("</tbody></table>");
    }

    private static string Layout(string title, string body, string? script = null) => $"""
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>{E(title)}</title>
        <meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
        <link rel="stylesheet" href="/assets/viewer.css"></head>
        <body><nav><a href="/">run</a> <a href="/examples">examples</a> <a href="/examples?correct=false">wrong answers</a> <a href="/diff">diff</a> <a href="/explain">explain</a></nav>
        <main>{body}</main>{(script is null ? "" : $"<script src=\"/assets/{script}\"></script>")}</body></html>
        """;

    public static string Index(RunOverview o)
    {
        var b = new StringBuilder();
        b.Append(CultureInfo.InvariantCulture, $"<h1>Run <span id=\"run-id\">{E(o.RunId)}</span></h1>");
        b.Append("<dl class=\"facts\">");
        Fact(b, "model", "model", o.Model ?? "(unknown)");
        Fact(b, "fingerprint", "model-fingerprint", o.ModelFingerprint);
        Fact(b, "manifest", "manifest", o.Manifest ?? "(unknown)");
        Fact(b, "state", "state", o.Finished ? "finished" : $"running ({o.CommittedShards} shards committed so far)");
        Fact(b, "examples", "n-examples", o.Examples.ToString(C));
        Fact(b, "rejects", "n-rejects", o.Rejects.ToString(C));
        Fact(b, "accuracy", "accuracy", $"{Pct(o.Accuracy)} ({o.Correct} of {o.WithExpected} with an expected answer)");
        b.Append("</dl>");

        b.Append("<h2>Tasks</h2><table id=\"tasks\"><thead><tr><th>task</th><th>examples</th><th>with expected</th><th>correct</th><th>accuracy</th><th></th></tr></thead><tbody>");
        foreach (var t in o.Tasks)
            b.Append(CultureInfo.InvariantCulture, $"""
                <tr data-task="{E(t.Task)}"><td>{E(t.Task)}</td><td class="n-examples">{t.Examples}</td><td class="n-expected">{t.WithExpected}</td><td class="n-correct">{t.Correct}</td><td class="accuracy" data-value="{(t.Accuracy is { } a ? R(a) : "")}">{Pct(t.Accuracy)}</td><td><a class="wrong" href="/examples?task={Uri.EscapeDataString(t.Task)}&amp;correct=false">wrong answers</a></td></tr>
                """);
        b.Append("</tbody></table>");

        b.Append("<h2>Heads and layers per task</h2><p class=\"note\">Mean log-probability increase of the target (nats) over the task's examples; red raises log p(target), blue lowers it.</p><div class=\"tasks-side\">");
        foreach (var t in o.Tasks)
        {
            b.Append(CultureInfo.InvariantCulture, $"<section class=\"task\" data-task=\"{E(t.Task)}\"><h3>{E(t.Task)}</h3>");
            b.Append("<h4>Top heads</h4><table class=\"top-heads\"><thead><tr><th>head</th><th>mean Δ log p</th><th>attention to image</th></tr></thead><tbody>");
            foreach (var h in o.TopHeads(t.Task, 5))
                b.Append(CultureInfo.InvariantCulture, $"<tr data-layer=\"{h.Layer}\" data-head=\"{h.Head}\"><td>L{h.Layer}.H{h.Head}</td><td class=\"mean\" data-value=\"{R(h.MeanLogProbIncrease)}\">{F(h.MeanLogProbIncrease)}</td><td>{(h.MeanAttnToImage is { } a ? F(a, 3) : "n/a")}</td></tr>");
            b.Append("</tbody></table>");
            var heads = o.Heads.Where(h => h.Task == t.Task).ToList();
            if (heads.Count > 0)
            {
                b.Append("<h4>Head grid</h4>");
                b.Append(HeadGrid("grid-" + t.Task, heads.Select(h => (h.Layer, h.Head, h.MeanLogProbIncrease)).ToList(), "mean Δ log p(target), nats"));
            }
            var layers = o.Layers.Where(l => l.Task == t.Task).ToList();
            if (layers.Count > 0)
            {
                b.Append("<h4>Layer profile</h4>");
                b.Append(LayerBars(layers.Select(l => (l.Layer, l.Component, l.MeanLogProbIncrease)).ToList(), "mean Δ log p(target), nats"));
            }
            b.Append("</section>");
        }
        b.Append("</div>");

        Table(b, "Causal effects (zero-ablation of K heads)", "causal", ["task", "selection", "K", "n", "mean Δ log p", "flip rate"], o.Causal,
            c => $"<td>{E(c.Task)}</td><td>{E(c.Selection)}</td><td>{c.K}</td><td>{c.N}</td><td data-value=\"{R(c.MeanDelta)}\">{F(c.MeanDelta)}</td><td>{Pct(c.FlipRate)}</td>");
        return Layout($"run {o.RunId}", b.ToString(), "viewer.js");
    }

    private static void Fact(StringBuilder b, string label, string id, string value) =>
        b.Append(CultureInfo.InvariantCulture, $"<dt>{E(label)}</dt><dd id=\"{id}\">{E(value)}</dd>");

    public static string Examples(RunOverview o, ExampleFilter f, ExamplePage page)
    {
        var b = new StringBuilder("<h1>Examples</h1><form method=\"get\" action=\"/examples\" id=\"filter\">");
        b.Append("<label>task <select name=\"task\"><option value=\"\">all</option>");
        foreach (var t in o.Tasks)
            b.Append(CultureInfo.InvariantCulture, $"<option value=\"{E(t.Task)}\"{(f.Task == t.Task ? " selected" : "")}>{E(t.Task)}</option>");
        b.Append("</select></label> <label>answer <select name=\"correct\"><option value=\"\">any</option>");
        b.Append(CultureInfo.InvariantCulture, $"<option value=\"true\"{(f.Correct == true ? " selected" : "")}>correct</option><option value=\"false\"{(f.Correct == false ? " selected" : "")}>wrong</option></select></label>");
        b.Append(CultureInfo.InvariantCulture, $" <label>target <input name=\"target\" value=\"{E(f.Target)}\" maxlength=\"{ExampleFilter.MaxText}\"></label>");
        b.Append(CultureInfo.InvariantCulture, $" <label>text <input name=\"q\" value=\"{E(f.Text)}\" maxlength=\"{ExampleFilter.MaxText}\"></label>");
        b.Append(CultureInfo.InvariantCulture, $" <input type=\"hidden\" name=\"limit\" value=\"{f.Limit}\"><button type=\"submit\">filter</button></form>");
        b.Append(CultureInfo.InvariantCulture, $"<p id=\"count\" data-total=\"{page.Total}\">{page.Total} examples; showing {(page.Items.Count == 0 ? 0 : f.Offset + 1)}–{f.Offset + page.Items.Count}</p>");
        b.Append("<table id=\"examples\"><thead><tr><th>example</th><th>task</th><th>prompt</th><th>target</th><th>p(target)</th><th>expected</th><th>correct</th></tr></thead><tbody>");
        foreach (var x in page.Items)
            b.Append(CultureInfo.InvariantCulture, $"""
                <tr data-id="{E(x.ExampleId)}"><td><a href="/examples/{Uri.EscapeDataString(x.ExampleId)}">{E(x.ExampleId)}</a></td><td>{E(x.Task)}</td><td class="prompt">{E(x.Prompt)}</td><td class="target">{E(x.TargetToken)}</td><td class="prob" data-value="{R(x.TargetProb)}">{F(x.TargetProb)}</td><td>{E(x.Expected ?? "")}</td><td class="correct">{(x.Correct is { } c ? (c ? "yes" : "no") : "")}</td></tr>
                """);
        b.Append("</tbody></table><p class=\"pages\">");
        string Link(int offset) =>
            "/examples?" + string.Join("&amp;", new[] { ("task", f.Task), ("correct", f.Correct?.ToString().ToLowerInvariant()), ("target", f.Target), ("q", f.Text),
                    ("limit", f.Limit.ToString(C)), ("offset", offset.ToString(C)) }
                .Where(p => p.Item2 is not null).Select(p => p.Item1 + "=" + Uri.EscapeDataString(p.Item2!)));
        if (f.Offset > 0) b.Append(CultureInfo.InvariantCulture, $"<a id=\"prev\" href=\"{Link(Math.Max(0, f.Offset - f.Limit))}\">previous</a> ");
        if (f.Offset + page.Items.Count < page.Total) b.Append(CultureInfo.InvariantCulture, $"<a id=\"next\" href=\"{Link(f.Offset + f.Limit)}\">next</a>");
        b.Append("</p>");
        return Layout("examples", b.ToString());
    }

    public static string Example(string runId, ExampleDetail d)
    {
        var x = d.Example;
        var b = new StringBuilder();
        b.Append(CultureInfo.InvariantCulture, $"<h1>Example <span id=\"example-id\">{E(x.ExampleId)}</span> <small>{E(x.Task)} · run {E(runId)}</small></h1>");
        b.Append("<dl class=\"facts\">");
        Fact(b, "prompt", "prompt", x.Prompt);
        Fact(b, "target", "target-token", x.TargetToken);
        b.Append(CultureInfo.InvariantCulture, $"<dt>p(target)</dt><dd id=\"target-prob\" data-value=\"{R(x.TargetProb)}\">{F(x.TargetProb)}</dd>");
        Fact(b, "expected", "expected", x.Expected ?? "(none)");
        Fact(b, "correct", "correct", x.Correct is { } c ? (c ? "yes" : "no") : "unknown");
        Fact(b, "tokens", "seq-len", $"{x.SeqLen} ({x.NumImageTokens} image tokens)");
        b.Append("</dl>");

        b.Append("<div class=\"example-grid\"><section><h2>Image</h2>");
        b.Append("""
            <label>overlay <select id="overlay-mode">
            <option value="log-top">log-increase, top head</option>
            <option value="log-topk">log-increase, top-k heads (sum)</option>
            <option value="attn-top">raw attention, top head</option>
            <option value="attn-topk">raw attention, top-k heads (mean)</option>
            <option value="none">none</option></select></label>
            """);
        b.Append("<div id=\"stage\">");
        if (d.HasImage)
            b.Append(CultureInfo.InvariantCulture, $"<img id=\"image\" alt=\"the example's image\" src=\"/examples/{Uri.EscapeDataString(x.ExampleId)}/image\">");
        else
            b.Append("<div id=\"image\" class=\"no-image\">no image (text-only example, or not in the run's manifest)</div>");
        b.Append("<canvas id=\"overlay\" width=\"336\" height=\"336\"></canvas></div>");
        b.Append("<p id=\"overlay-caption\"></p><p class=\"note\">Patch colours: red raises log p(target), blue lowers it (log-increase overlays); red: attention weight (raw attention); stronger colour, larger magnitude. Only the example's top-k heads (position_stats) have position scores.</p></section>");

        b.Append("<section><h2>Heads of this example</h2><p class=\"note\">Click a head to show it on the image.</p>");
        if (d.Heads.Count > 0)
            b.Append(HeadGrid("example-heads", d.Heads.Select(h => (h.Layer, h.Head, h.LogProbIncrease)).ToList(), "Δ log p(target), nats",
                d.Positions.Select(p => (p.Layer, p.Head)).ToHashSet()));
        b.Append("<h2>Layers</h2>");
        if (d.Layers.Count > 0)
            b.Append(LayerBars(d.Layers.Select(l => (l.Layer, l.Component, l.LogProbIncrease)).ToList(), "Δ log p(target), nats"));
        b.Append("</section></div>");

        b.Append("<h2>Prompt positions: the last token's attention (selected head)</h2><div id=\"text-attention\"></div>");
        b.Append("<h2>Logit lens over the patch grid (top-1 token of each image position)</h2>");
        b.Append(LensGrid(d));
        Table(b, "Causal effects (heads zero-ablated)", "example-causal", ["selection", "K", "heads", "Δ log p", "flipped"], d.Causal,
            cv => $"<td>{E(cv.Selection)}</td><td>{cv.K}</td><td>{E(cv.Heads)}</td><td data-value=\"{R(cv.Delta)}\">{F(cv.Delta)}</td><td>{(cv.Flipped ? "yes" : "no")}</td>");
        Table(b, "Top neurons", "neurons", ["layer", "neuron", "Δ log p", "coefficient"], d.Neurons,
            n => $"<td>{n.Layer}</td><td>{n.Neuron}</td><td>{F(n.LogProbIncrease)}</td><td>{F(n.Coefficient)}</td>");
        // The data the script draws from; JsonSerializer escapes <, > and & (no </script> can close this block).
        b.Append("<script id=\"example-data\" type=\"application/json\">")
            .Append(JsonSerializer.Serialize(new { heads = d.Heads, positions = d.Positions, num_image_tokens = x.NumImageTokens }, ViewerServer.Json))
            .Append("</script>");
        return Layout($"example {x.ExampleId}", b.ToString(), "viewer.js");
    }

    public static string Diff(IReadOnlyList<RunIndexEntry> runs, (RunIndexEntry A, RunIndexEntry B, RunDiffResult Diff)? d, string? root)
    {
        var b = new StringBuilder("<h1>Diff of two runs</h1>");
        if (root is null || runs.Count < 2)
        {
            b.Append("<p id=\"no-diff\">This run does not lie in a reanalysis root with another completed run (<code>./llavamech reanalyze --out ROOT</code> keeps the index <code>ROOT/_runs/</code>): nothing to compare.</p>");
            return Layout("diff", b.ToString());
        }
        b.Append("<form method=\"get\" action=\"/diff\" id=\"pick\">");
        foreach (var (name, chosen) in new[] { ("a", d?.A.RunId), ("b", d?.B.RunId) })
        {
            b.Append(CultureInfo.InvariantCulture, $"<label>{name.ToUpperInvariant()} <select name=\"{name}\">");
            foreach (var r in runs)
                b.Append(CultureInfo.InvariantCulture, $"<option value=\"{E(r.RunId)}\"{(r.RunId == chosen ? " selected" : "")}>{E(r.RunId)} ({r.UpdatedAt:yyyy-MM-dd HH:mm})</option>");
            b.Append("</select></label> ");
        }
        b.Append("<button type=\"submit\">compare</button></form>");
        if (d is not { } x) return Layout("diff", b.Append("<p>Pick two runs.</p>").ToString());
        b.Append(CultureInfo.InvariantCulture, $"<dl class=\"facts\"><dt>A</dt><dd id=\"run-a\">{E(x.A.RunId)} · {E(x.Diff.A.ModelFingerprint)} · {x.Diff.A.Examples} examples</dd>");
        b.Append(CultureInfo.InvariantCulture, $"<dt>B</dt><dd id=\"run-b\">{E(x.B.RunId)} · {E(x.Diff.B.ModelFingerprint)} · {x.Diff.B.Examples} examples</dd></dl>");
        b.Append("<p class=\"note\">Per task, over the examples both runs hold: mean log-probability increase of every head in A and B, B − A (red: higher in B), Spearman rank correlation of head and layer importance, overlap of the top-10 heads.</p><div class=\"tasks-side\">");
        foreach (var t in x.Diff.Tasks)
        {
            b.Append(CultureInfo.InvariantCulture, $"<section class=\"task\" data-task=\"{E(t.Task)}\"><h3>{E(t.Task)} <small>{t.Examples} shared examples</small></h3>");
            b.Append(CultureInfo.InvariantCulture, $"<p>Spearman heads <span class=\"spearman-heads\" data-value=\"{R(t.SpearmanHeads)}\">{F(t.SpearmanHeads, 3)}</span>, layers <span class=\"spearman-layers\">{F(t.SpearmanLayers, 3)}</span>; top-{t.TopK} overlap (Jaccard) {F(t.TopKJaccard, 2)}</p>");
            var heads = x.Diff.Heads.Where(h => h.Task == t.Task).ToList();
            if (heads.Count > 0) b.Append(HeadGrid("diff-" + t.Task, heads.Select(h => (h.Layer, h.Head, h.Diff)).ToList(), "B − A, mean Δ log p(target), nats"));
            b.Append("<h4>Most changed heads</h4><table class=\"changed-heads\"><thead><tr><th>head</th><th>mean A</th><th>mean B</th><th>B − A</th><th>rank A → B</th></tr></thead><tbody>");
            foreach (var h in x.Diff.MostChangedHeads(t.Task).Take(10))
                b.Append(CultureInfo.InvariantCulture, $"<tr data-layer=\"{h.Layer}\" data-head=\"{h.Head}\"><td>L{h.Layer}.H{h.Head}</td><td>{F(h.MeanA)}</td><td>{F(h.MeanB)}</td><td class=\"diff\" data-value=\"{R(h.Diff)}\">{F(h.Diff)}</td><td>{h.RankA} → {h.RankB}</td></tr>");
            b.Append("</tbody></table><h4>Layers by how much their heads moved</h4><table class=\"changed-layers\"><thead><tr><th>layer</th><th>mean |B − A| of its heads</th><th>largest (head)</th><th>attn B − A</th><th>ffn B − A</th></tr></thead><tbody>");
            foreach (var l in x.Diff.MostChangedLayers(t.Task))
                b.Append(CultureInfo.InvariantCulture, $"<tr data-layer=\"{l.Layer}\"><td>L{l.Layer}</td><td data-value=\"{R(l.MeanAbsHeadDiff)}\">{F(l.MeanAbsHeadDiff)}</td><td>{F(l.MaxAbsHeadDiff)} (H{l.MaxHead})</td><td>{F(l.AttnDiff)}</td><td>{F(l.FfnDiff)}</td></tr>");
            b.Append("</tbody></table></section>");
        }
        return Layout("diff", b.Append("</div>").ToString());
    }

    public static string NoModel() => Layout("explain",
        "<h1>Explain</h1><p id=\"no-model\">This viewer was started without a model: start it with <code>./llavamech serve --run RUN --model DIR</code> to explain an uploaded image.</p>");

    public static string ExplainForm(string modelDir, string? error)
    {
        var b = new StringBuilder("<h1>Explain an image</h1>");
        b.Append(CultureInfo.InvariantCulture, $"<p>Model <code id=\"model-dir\">{E(modelDir)}</code>. Upload a PNG or JPEG (at most {ExplainService.MaxImageBytes >> 20} MiB) and a prompt with <code>&lt;image&gt;</code>; then click a head to ablate it.</p>");
        if (error is not null) b.Append(CultureInfo.InvariantCulture, $"<p id=\"error\" class=\"error\">{E(error)}</p>");
        b.Append(CultureInfo.InvariantCulture, $"""
            <form method="post" action="/explain" enctype="multipart/form-data" id="explain-form">
            <p><label>image <input type="file" name="image" accept="image/png,image/jpeg" required></label></p>
            <p><label>prompt<br><textarea name="prompt" rows="4" cols="70" maxlength="{ExplainService.MaxPromptChars}">USER: &lt;image&gt;
            What is the color of the circle?
            ASSISTANT: The color of the circle is</textarea></label></p>
            <p><button type="submit">explain</button></p></form>
            """);
        return Layout("explain", b.ToString());
    }

    public static string Explained(string id, System.Text.Json.Nodes.JsonObject x)
    {
        var b = new StringBuilder("<h1>Explanation</h1><dl class=\"facts\">");
        Fact(b, "target", "target-token", (string?)x["target_token"] ?? "");
        double p = (double?)x["target_prob"] ?? double.NaN;
        b.Append(CultureInfo.InvariantCulture, $"<dt>p(target)</dt><dd id=\"target-prob\" data-value=\"{R(p)}\">{F(p)}</dd></dl>");
        b.Append(CultureInfo.InvariantCulture, $"<div class=\"example-grid\"><section><h2>Image: log-increase of the top head</h2><div id=\"stage\"><img id=\"image\" alt=\"the uploaded image\" src=\"/explain/{Uri.EscapeDataString(id)}/image\"><canvas id=\"overlay\" width=\"336\" height=\"336\"></canvas></div></section>");
        b.Append("<section><h2>Heads</h2><p class=\"note\">Click a head to zero-ablate it (intervene) and see log p(target) move.</p>");
        var grid = x["head_increase"]?.AsArray();
        if (grid is not null)
        {
            var cells = new List<(int, int, double)>();
            for (int l = 0; l < grid.Count; l++)
                for (int h = 0; h < grid[l]!.AsArray().Count; h++)
                    cells.Add((l, h, (double?)grid[l]![h] ?? double.NaN));
            b.Append(HeadGrid("explain-heads", cells, "Δ log p(target), nats"));
        }
        b.Append("<div id=\"ablation\" class=\"ablation\">no head ablated yet</div></section></div>");
        b.Append("<script id=\"explain-data\" type=\"application/json\">")
            .Append(JsonSerializer.Serialize(new { id, heatmap = x["log_increase_heatmap"] }, ViewerServer.Json))
            .Append("</script>");
        return Layout("explanation", b.ToString(), "viewer.js");
    }

    /// <summary>
    /// The logit lens's top-1 token of each image position, one table per image part: LLaVA-1.5's patch grid; LLaVA-NeXT's
    /// base tile (the whole image) and high-resolution grid (padding removed), each labelled, and the row newlines listed.
    /// </summary>
    private static string LensGrid(ExampleDetail d)
    {
        var places = d.Positions.Where(p => p.IsImage && p.PatchRow is not null && p.PatchCol is not null)
            .GroupBy(p => p.Position).ToDictionary(g => g.Key, g => (Part: g.First().ImagePart ?? "base", Row: g.First().PatchRow!.Value, Col: g.First().PatchCol!.Value));
        var top = d.LogitLens.Where(l => l.Rank == 0).ToDictionary(l => l.Position);
        if (top.Count == 0 || places.Count == 0) return "<p id=\"lens\">no logit lens rows for this example</p>";
        var parts = places.Values.Select(p => p.Part).Distinct().ToList();
        if (parts.Count == 1 && parts[0] == "base") return LensTable(d, "lens", places.ToDictionary(p => p.Key, p => (p.Value.Row, p.Value.Col)), top);
        var b = new StringBuilder();
        foreach (var (part, id, label) in new[]
                 {
                     ("base", "lens", "base: the whole image in one tile"),
                     ("grid", "lens-grid", "grid: the high-resolution tiles, padding removed"),
                 })
        {
            var cells = places.Where(p => p.Value.Part == part).ToDictionary(p => p.Key, p => (p.Value.Row, p.Value.Col));
            if (cells.Count == 0) continue;
            int rows = cells.Values.Max(c => c.Row) + 1, cols = cells.Values.Max(c => c.Col) + 1;
            b.Append(CultureInfo.InvariantCulture, $"<h3 class=\"image-part\" data-part=\"{part}\">{E(label)} ({rows} x {cols})</h3>");
            b.Append(LensTable(d, id, cells, top));
        }
        var newlines = places.Where(p => p.Value.Part == "newline" && top.ContainsKey(p.Key)).OrderBy(p => p.Value.Row).ToList();
        if (newlines.Count > 0)
            b.Append("<h3 class=\"image-part\" data-part=\"newline\">newline: the token ending each grid row</h3><p id=\"lens-newline\">")
                .AppendJoin(" ", newlines.Select(p => $"<span title=\"position {p.Key}, row {p.Value.Row}\">{E(top[p.Key].Token)}</span>")).Append("</p>");
        return b.ToString();
    }

    private static string LensTable(ExampleDetail d, string id, Dictionary<int, (int Row, int Col)> patches, Dictionary<int, LensValue> top)
    {
        int rows = patches.Values.Max(p => p.Row) + 1, cols = patches.Values.Max(p => p.Col) + 1;
        var cell = new string?[rows, cols];
        var titles = new string?[rows, cols];
        foreach (var (pos, rc) in patches)
            if (top.TryGetValue(pos, out var l))
            {
                cell[rc.Row, rc.Col] = l.Token;
                titles[rc.Row, rc.Col] = $"position {pos}: " + string.Join(", ", d.LogitLens.Where(z => z.Position == pos).OrderBy(z => z.Rank).Select(z => z.Token));
            }
        var b = new StringBuilder($"<table id=\"{id}\" class=\"lens\"><tbody>");
        for (int r = 0; r < rows; r++)
        {
            b.Append("<tr>");
            for (int c = 0; c < cols; c++)
            {
                string tok = cell[r, c] ?? "";
                bool hit = tok.Trim().Length > 0 && tok.Trim() == d.Example.TargetToken.Trim();
                b.Append(CultureInfo.InvariantCulture, $"<td class=\"{(hit ? "hit" : "")}\" data-row=\"{r}\" data-col=\"{c}\" title=\"{E(titles[r, c])}\">{E(tok)}</td>");
            }
            b.Append("</tr>");
        }
        return b.Append("</tbody></table><p class=\"note\">Highlighted: the lens's top token is the target.</p>").ToString();
    }

    /// <summary>
    /// A layers x heads heatmap as SVG: every cell the same size, tick labels centred on their cells, and a colour bar
    /// with its unit. Cells of <paramref name="clickable"/> heads (null: all) carry the class <c>clickable</c>.
    /// </summary>
    public static string HeadGrid(string id, IReadOnlyList<(int Layer, int Head, double Value)> cells, string unit, IReadOnlySet<(int, int)>? clickable = null)
    {
        int L = cells.Max(c => c.Layer) + 1, H = cells.Max(c => c.Head) + 1;
        double max = Math.Max(1e-12, cells.Max(c => Math.Abs(c.Value)));
        const int cell = 28, left = 44, top = 22, barGap = 16, barW = 12;
        int width = left + H * cell + barGap + barW + 70, height = top + L * cell + 30;
        var b = new StringBuilder();
        b.Append(CultureInfo.InvariantCulture, $"<svg class=\"head-grid\" id=\"{E(id)}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{E(unit)} per layer and head\">");
        for (int h = 0; h < H; h++)
            b.Append(CultureInfo.InvariantCulture, $"<text class=\"tick\" x=\"{left + h * cell + cell / 2}\" y=\"{top - 6}\" text-anchor=\"middle\">H{h}</text>");
        for (int l = 0; l < L; l++)
            b.Append(CultureInfo.InvariantCulture, $"<text class=\"tick\" x=\"{left - 6}\" y=\"{top + l * cell + cell / 2 + 4}\" text-anchor=\"end\">L{l}</text>");
        foreach (var (l, h, v) in cells)
        {
            bool click = clickable is null || clickable.Contains((l, h));
            b.Append(CultureInfo.InvariantCulture,
                $"<rect class=\"cell{(click ? " clickable" : "")}\" data-layer=\"{l}\" data-head=\"{h}\" data-value=\"{R(v)}\" x=\"{left + h * cell}\" y=\"{top + l * cell}\" width=\"{cell}\" height=\"{cell}\" fill=\"{Diverging(v / max)}\"><title>L{l}.H{h}: {F(v)}</title></rect>");
        }
        // Colour bar: -max (bottom, blue) .. +max (top, red), with its unit.
        int bx = left + H * cell + barGap, steps = 20, bh = L * cell;
        for (int i = 0; i < steps; i++)
        {
            double t = 1 - 2.0 * (i + 0.5) / steps;
            b.Append(CultureInfo.InvariantCulture, $"<rect x=\"{bx}\" y=\"{top + i * bh / (double)steps:F2}\" width=\"{barW}\" height=\"{bh / (double)steps + 0.5:F2}\" fill=\"{Diverging(t)}\"/>");
        }
        b.Append(CultureInfo.InvariantCulture, $"<text class=\"tick\" x=\"{bx + barW + 3}\" y=\"{top + 8}\">{F(max, 3)}</text>");
        b.Append(CultureInfo.InvariantCulture, $"<text class=\"tick\" x=\"{bx + barW + 3}\" y=\"{top + bh / 2 + 4}\">0</text>");
        b.Append(CultureInfo.InvariantCulture, $"<text class=\"tick\" x=\"{bx + barW + 3}\" y=\"{top + bh}\">{F(-max, 3)}</text>");
        b.Append(CultureInfo.InvariantCulture, $"<text class=\"unit\" x=\"{left}\" y=\"{height - 6}\">{E(unit)}</text></svg>");
        return b.ToString();
    }

    /// <summary>Per-layer bars of the attention and FFN blocks as SVG, zero line and unit.</summary>
    public static string LayerBars(IReadOnlyList<(int Layer, string Component, double Value)> rows, string unit)
    {
        int L = rows.Max(r => r.Layer) + 1;
        double max = Math.Max(1e-12, rows.Max(r => Math.Abs(r.Value)));
        const int rowH = 22, left = 90, half = 140, top = 8;
        int width = left + 2 * half + 20, height = top + L * 2 * rowH + 24;
        var b = new StringBuilder();
        b.Append(CultureInfo.InvariantCulture, $"<svg class=\"layer-bars\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{E(unit)} per layer\">");
        int zero = left + half;
        int i = 0;
        foreach (var (l, comp, v) in rows.OrderBy(r => r.Layer).ThenBy(r => r.Component, StringComparer.Ordinal))
        {
            double w = Math.Abs(v) / max * half;
            double x = v >= 0 ? zero : zero - w;
            int y = top + i * rowH;
            b.Append(CultureInfo.InvariantCulture, $"<text class=\"tick\" x=\"{left - 6}\" y=\"{y + 15}\" text-anchor=\"end\">L{l} {E(comp)}</text>");
            b.Append(CultureInfo.InvariantCulture, $"<rect class=\"bar {(comp == Components.Attention ? "attn" : "ffn")}\" data-layer=\"{l}\" data-component=\"{E(comp)}\" data-value=\"{R(v)}\" x=\"{x:F2}\" y=\"{y + 3}\" width=\"{Math.Max(w, 0.5):F2}\" height=\"{rowH - 6}\"><title>L{l} {E(comp)}: {F(v)}</title></rect>");
            i++;
        }
        b.Append(CultureInfo.InvariantCulture, $"<line x1=\"{zero}\" x2=\"{zero}\" y1=\"{top}\" y2=\"{top + i * rowH}\" stroke=\"#333\"/>");
        b.Append(CultureInfo.InvariantCulture, $"<text class=\"tick\" x=\"{zero - half}\" y=\"{height - 6}\">{F(-max, 3)}</text><text class=\"tick\" x=\"{zero}\" y=\"{height - 6}\" text-anchor=\"middle\">0</text><text class=\"tick\" x=\"{zero + half}\" y=\"{height - 6}\" text-anchor=\"end\">{F(max, 3)}</text>");
        b.Append(CultureInfo.InvariantCulture, $"<text class=\"unit\" x=\"{zero}\" y=\"{height - 18}\" text-anchor=\"middle\">{E(unit)}</text></svg>");
        return b.ToString();
    }

    /// <summary>Blue (-1) through white (0) to red (+1).</summary>
    public static string Diverging(double t)
    {
        t = double.IsFinite(t) ? Math.Clamp(t, -1, 1) : 0;
        int fade = (int)Math.Round(255 * (1 - Math.Abs(t)));
        return t >= 0 ? $"rgb(255,{fade},{fade})" : $"rgb({fade},{fade},255)";
    }
}
