// The viewer's one script: overlays on the example page and head clicks. Reads its data from the page's
// application/json block; writes text only through textContent (never innerHTML), so no run text becomes markup.
(function () {
  "use strict";
  // /explain/{id}: the top head's log-increase over the patches; a click on a head asks intervene to ablate it.
  var explainNode = document.getElementById("explain-data");
  if (explainNode) {
    var ex = JSON.parse(explainNode.textContent);
    var cv = document.getElementById("overlay"), c2 = cv.getContext("2d"), hm = ex.heatmap || [];
    var side = hm.length, max = 1e-12;
    hm.forEach(function (row) { row.forEach(function (v) { if (v !== null) max = Math.max(max, Math.abs(v)); }); });
    for (var r = 0; r < side; r++) for (var c = 0; c < side; c++) {
      var t = (hm[r][c] || 0) / max, a = (0.85 * Math.abs(t)).toFixed(3);
      c2.fillStyle = t < 0 ? "rgba(30,60,255," + a + ")" : "rgba(230,20,20," + a + ")";
      c2.fillRect(c * cv.width / side, r * cv.height / side, Math.ceil(cv.width / side), Math.ceil(cv.height / side));
    }
    var box = document.getElementById("ablation");
    document.querySelectorAll("#explain-heads rect.cell").forEach(function (cell) {
      cell.addEventListener("click", function () {
        var heads = cell.dataset.layer + "." + cell.dataset.head;
        document.querySelectorAll("#explain-heads rect.cell").forEach(function (x) { x.classList.remove("selected"); });
        cell.classList.add("selected");
        box.textContent = "ablating L" + cell.dataset.layer + ".H" + cell.dataset.head + " ...";
        box.dataset.state = "running";
        fetch("/api/explain/" + encodeURIComponent(ex.id) + "/ablate?heads=" + encodeURIComponent(heads))
          .then(function (resp) { if (!resp.ok) throw new Error("HTTP " + resp.status); return resp.json(); })
          .then(function (res) {
            box.textContent = "L" + cell.dataset.layer + ".H" + cell.dataset.head + " zero-ablated: p(" + res.target_token + ") " +
              res.clean_prob.toFixed(4) + " -> " + res.edit_prob.toFixed(4) + " (delta log p " + res.delta.toFixed(4) + (res.flipped ? ", answer flipped" : "") + ")";
            box.dataset.heads = heads;
            box.dataset.delta = res.delta;
            box.dataset.editProb = res.edit_prob;
            box.dataset.state = "done";
          })
          .catch(function (e) { box.textContent = "ablation failed: " + e.message; box.dataset.state = "failed"; });
      });
    });
    return;
  }
  var dataNode = document.getElementById("example-data");
  if (!dataNode) return;
  var data = JSON.parse(dataNode.textContent);
  var canvas = document.getElementById("overlay");
  var caption = document.getElementById("overlay-caption");
  var mode = document.getElementById("overlay-mode");
  var ctx = canvas.getContext("2d");
  var positions = data.positions || [];
  var heads = data.heads || [];

  function key(l, h) { return l + "." + h; }
  var byHead = {};
  positions.forEach(function (p) { (byHead[key(p.layer, p.head)] = byHead[key(p.layer, p.head)] || []).push(p); });
  var withPositions = Object.keys(byHead);
  // The overlay draws the base grid over the picture: LLaVA-1.5's patch grid, LLaVA-NeXT's base tile (the whole image in
  // one tile); LLaVA-NeXT's high-resolution grid and newlines are in the lens tables below.
  function onBase(p) { return p.is_image && p.patch_row !== null && p.patch_col !== null && (!p.image_part || p.image_part === "base"); }
  var image = positions.filter(onBase);
  var rows = 0, cols = 0;
  image.forEach(function (p) { rows = Math.max(rows, p.patch_row + 1); cols = Math.max(cols, p.patch_col + 1); });
  if (rows === 0 && data.num_image_tokens > 0) { rows = cols = Math.round(Math.sqrt(data.num_image_tokens)); }
  var topHead = heads.filter(function (h) { return byHead[key(h.layer, h.head)]; })
    .sort(function (a, b) { return b.log_prob_increase - a.log_prob_increase || a.layer - b.layer || a.head - b.head; })[0];
  var selected = topHead ? { layer: topHead.layer, head: topHead.head } : null;

  function grid(list, field, reduce) {
    var g = [], n = [];
    for (var r = 0; r < rows; r++) { g.push(new Array(cols).fill(0)); n.push(new Array(cols).fill(0)); }
    list.forEach(function (p) {
      if (!onBase(p) || p.patch_row >= rows || p.patch_col >= cols) return;
      g[p.patch_row][p.patch_col] += p[field]; n[p.patch_row][p.patch_col] += 1;
    });
    if (reduce === "mean") for (var i = 0; i < rows; i++) for (var j = 0; j < cols; j++) if (n[i][j] > 0) g[i][j] /= n[i][j];
    return g;
  }

  function draw(g, diverging) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!g || rows === 0) return 0;
    var max = 1e-12, sum = 0;
    g.forEach(function (row) { row.forEach(function (v) { max = Math.max(max, Math.abs(v)); sum += v; }); });
    var cw = canvas.width / cols, ch = canvas.height / rows;
    for (var r = 0; r < rows; r++) for (var c = 0; c < cols; c++) {
      var t = g[r][c] / max, a = (0.85 * Math.abs(t)).toFixed(3);
      ctx.fillStyle = diverging && t < 0 ? "rgba(30,60,255," + a + ")" : "rgba(230,20,20," + a + ")";
      ctx.fillRect(c * cw, r * ch, Math.ceil(cw), Math.ceil(ch));
    }
    return sum;
  }

  function headList(l, h) { return byHead[key(l, h)] || []; }

  function textAttention(list, label) {
    var box = document.getElementById("text-attention");
    if (!box) return;
    box.textContent = "";
    var text = list.filter(function (p) { return !p.is_image; });
    if (text.length === 0) { box.textContent = "no text positions for " + label; return; }
    text.forEach(function (p) {
      var s = document.createElement("span");
      s.className = "pos";
      s.dataset.position = p.position;
      s.textContent = "pos " + p.position + ": " + p.attn_weight.toFixed(3);
      s.title = label + ", position " + p.position + ", attention " + p.attn_weight + ", log-increase " + p.log_prob_increase;
      box.appendChild(s);
    });
  }

  function setCaption(text, overlayKey) {
    caption.textContent = text;
    caption.dataset.overlay = overlayKey;
    canvas.dataset.overlay = overlayKey;
  }

  function render() {
    var m = mode.value, label;
    document.querySelectorAll("#example-heads rect.cell").forEach(function (r) { r.classList.remove("selected"); });
    if (m === "none") { draw(null); setCaption("no overlay", "none"); return; }
    if (m === "log-topk" || m === "attn-topk") {
      var all = withPositions.map(function (k) { return byHead[k]; }).reduce(function (a, b) { return a.concat(b); }, []);
      var s = m === "log-topk" ? draw(grid(all, "log_prob_increase", "sum"), true) : draw(grid(all, "attn_weight", "mean"), false);
      label = (m === "log-topk" ? "log-increase" : "raw attention") + ", top-k heads (" + withPositions.length + ": " + withPositions.map(function (k) { return "L" + k.replace(".", ".H"); }).join(", ") + ")";
      setCaption(label, m);
      canvas.dataset.sum = s;
      textAttention(all.filter(function (p) { return selected && p.layer === selected.layer && p.head === selected.head; }), label);
      return;
    }
    if (!selected) { draw(null); setCaption("no head has position scores in this example", "none"); return; }
    var list = headList(selected.layer, selected.head);
    var hl = "L" + selected.layer + ".H" + selected.head;
    var cell = document.querySelector('#example-heads rect.cell[data-layer="' + selected.layer + '"][data-head="' + selected.head + '"]');
    if (cell) cell.classList.add("selected");
    if (list.length === 0) {
      draw(null);
      setCaption("head " + hl + ": no position scores (only the example's top-k heads have them)", "head-" + selected.layer + "-" + selected.head);
      textAttention([], hl);
      return;
    }
    var attn = m === "attn-top";
    var sum = draw(grid(list, attn ? "attn_weight" : "log_prob_increase", "sum"), !attn);
    setCaption("head " + hl + ": " + (attn ? "raw attention" : "log-increase") + " of the last position over the patches", "head-" + selected.layer + "-" + selected.head + (attn ? "-attn" : "-log"));
    canvas.dataset.sum = sum;
    textAttention(list, hl);
  }

  mode.addEventListener("change", function () {
    if ((mode.value === "log-top" || mode.value === "attn-top") && topHead && !selected) selected = { layer: topHead.layer, head: topHead.head };
    render();
  });
  document.querySelectorAll("#example-heads rect.cell").forEach(function (r) {
    r.addEventListener("click", function () {
      selected = { layer: +r.dataset.layer, head: +r.dataset.head };
      if (mode.value !== "log-top" && mode.value !== "attn-top") mode.value = "log-top";
      render();
    });
  });
  render();
})();
