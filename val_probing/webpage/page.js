// val-probing HTML report: draws the curves, heatmaps and tables from the JSON in #val-data.
// Plain DOM and SVG, no library, no request: every text from the data goes in through textContent.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("val-data").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  var hidden = {};
  var SHOWN = 160; // characters of an answer shown before "more"
  var app = document.getElementById("app");
  app.textContent = "";

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function sv(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  function fmt(x, d) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(d === undefined ? 1 : d);
  }
  function tokens(n) {
    if (n === null || n === undefined) return "?";
    return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(0) + "K" : String(n);
  }
  function section(title, id) {
    var s = el("section", { id: id });
    s.appendChild(el("h2", {}, title));
    app.appendChild(s);
    return s;
  }
  function taskName(task) {
    for (var i = 0; i < D.tasks.length; i++) if (D.tasks[i].task === task) return D.tasks[i].name;
    return task;
  }
  function taskTitle(task) {
    for (var i = 0; i < D.tasks.length; i++) if (D.tasks[i].task === task) return D.tasks[i].title;
    return task;
  }
  function applyHidden() {
    var nodes = document.querySelectorAll("[data-model]");
    for (var i = 0; i < nodes.length; i++) {
      var m = nodes[i].getAttribute("data-model");
      nodes[i].classList.toggle("off", !!hidden[m]);
    }
  }

  // ------------------------------------------------------------ tooltip
  var tip = el("div", { id: "tip", role: "tooltip" });
  document.body.appendChild(tip);
  function showTip(ev, lines) {
    tip.textContent = "";
    lines.forEach(function (line, i) {
      tip.appendChild(el(i ? "div" : "strong", {}, line));
    });
    tip.style.display = "block";
    var x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + 260 > window.innerWidth) x = ev.clientX - 270;
    tip.style.left = x + window.scrollX + "px";
    tip.style.top = y + window.scrollY + "px";
  }
  function hideTip() { tip.style.display = "none"; }

  // ------------------------------------------------------------ header and legend
  document.getElementById("subtitle").textContent =
    "Generated " + D.generated + " by val-probing " + D.version +
    ". Click a point of a curve (or a heatmap cell) to read its questions.";
  var legend = el("div", { id: "legend", "aria-label": "models" });
  D.models.forEach(function (m) {
    var b = el("button", { type: "button", class: "key", "data-model": m, title: "show / hide " + m });
    var sw = el("span", { class: "swatch" });
    sw.style.background = D.colors[m];
    b.appendChild(sw);
    b.appendChild(document.createTextNode(m));
    b.addEventListener("click", function () {
      hidden[m] = !hidden[m];
      b.setAttribute("aria-pressed", hidden[m] ? "false" : "true");
      applyHidden();
    });
    legend.appendChild(b);
  });
  app.appendChild(legend);

  // ------------------------------------------------------------ position curves
  var W = 420, H = 260, L = 44, R = 20, T = 14, B = 36;
  function px(x) { return L + (x / 100) * (W - L - R); }
  function py(y) { return T + (1 - y / 100) * (H - T - B); }

  function axes(svg, xlabel) {
    for (var v = 0; v <= 100; v += 20) {
      svg.appendChild(sv("line", { x1: px(0), x2: px(100), y1: py(v), y2: py(v), class: "grid" }));
      var ty = sv("text", { x: L - 6, y: py(v) + 4, class: "tick", "text-anchor": "end" });
      ty.textContent = v;
      svg.appendChild(ty);
      var tx = sv("text", { x: px(v), y: H - B + 16, class: "tick", "text-anchor": "middle" });
      tx.textContent = v + "%";
      svg.appendChild(tx);
    }
    var xl = sv("text", { x: (L + W - R) / 2, y: H - 4, class: "label", "text-anchor": "middle" });
    xl.textContent = xlabel;
    svg.appendChild(xl);
    var yl = sv("text", { x: 12, y: (T + H - B) / 2, class: "label", "text-anchor": "middle",
      transform: "rotate(-90 12 " + (T + H - B) / 2 + ")" });
    yl.textContent = "score (x100)";
    svg.appendChild(yl);
  }

  function drawCurve(svg, c) {
    var color = D.colors[c.model];
    var g = sv("g", { class: "curve", "data-model": c.model });
    var band = [], upper = [], line = "";
    c.buckets.forEach(function (b) {
      if (b.mean === null) return;
      line += (line ? " L" : "M") + px(b.x).toFixed(1) + " " + py(b.mean).toFixed(1);
      if (b.lo !== null && b.hi !== null) {
        band.push(px(b.x).toFixed(1) + " " + py(b.hi).toFixed(1));
        upper.unshift(px(b.x).toFixed(1) + " " + py(b.lo).toFixed(1));
      }
    });
    if (band.length > 1) {
      var p = sv("path", { d: "M" + band.concat(upper).join(" L") + " Z", class: "band" });
      p.style.fill = color;
      g.appendChild(p);
    }
    var path = sv("path", { d: line, class: "curve-line" });
    path.style.stroke = color;
    g.appendChild(path);
    c.buckets.forEach(function (b) {
      if (b.mean === null) return;
      var pt = sv("circle", { cx: px(b.x), cy: py(b.mean), r: 4.5, class: "pt",
        "data-bucket": b.i, tabindex: 0 });
      pt.style.fill = color;
      var lo = (100 * b.i / c.n_buckets).toFixed(0), hi = (100 * (b.i + 1) / c.n_buckets).toFixed(0);
      var lines = [c.model, taskName(c.task) + " " + c.length_label + ", bucket " + b.i +
        " (depth " + lo + "-" + hi + "%)", "score " + fmt(b.mean) +
        (b.lo !== null ? "  (95% CI " + fmt(b.lo) + "-" + fmt(b.hi) + ")" : "  (no CI: no samples)"),
        b.n + " questions; click to read them"];
      var bc = c.cost && c.cost.buckets[String(b.i)];
      if (bc) lines.push("cost: " + tokens(bc.prompt_tokens) + " prompt tokens, " +
        tokens(bc.generation_tokens) + " generated");
      pt.addEventListener("mousemove", function (ev) { showTip(ev, lines); });
      pt.addEventListener("mouseleave", hideTip);
      pt.addEventListener("click", function () { drill(c, b.i, pt); });
      pt.addEventListener("keydown", function (ev) { if (ev.key === "Enter") drill(c, b.i, pt); });
      g.appendChild(pt);
    });
    svg.appendChild(g);
  }

  function drawFloors(svg, task, models) {
    models.forEach(function (m) {
      var f = (D.floors[m] || {})[task];
      if (!f) return;
      [["closed_book", "closed-book floor"], ["constant", "constant-answer floor"]].forEach(function (k) {
        var v = f[k[0]];
        if (v === null || v === undefined) return;
        var ln = sv("line", { x1: px(0), x2: px(100), y1: py(v), y2: py(v),
          class: "floor " + k[0], "data-model": m });
        ln.style.stroke = D.colors[m];
        ln.addEventListener("mousemove", function (ev) {
          showTip(ev, [m, k[1] + ": " + fmt(v), "what the model scores without reading the context"]);
        });
        ln.addEventListener("mouseleave", hideTip);
        svg.appendChild(ln);
      });
    });
  }

  var curves = section("Position curves", "curves");
  curves.appendChild(el("p", { class: "note" },
    "x: where the needle was (bucket centre, % of the context); y: bucket mean of the reference " +
    "score; band: 95% bootstrap interval; dashed lines: floors (closed book, constant answer)."));
  var grid = el("div", { class: "panels" });
  curves.appendChild(grid);
  var panels = {};
  D.curves.forEach(function (c) {
    var key = c.task + "/" + c.length_label;
    if (!panels[key]) {
      var fig = el("figure", { class: "panel", "data-task": c.task, "data-length": c.length_label });
      fig.appendChild(el("figcaption", {}, taskTitle(c.task) + " — " + c.length_label));
      var svg = sv("svg", { viewBox: "0 0 " + W + " " + H, class: "curve-panel", role: "img",
        "aria-label": taskName(c.task) + " position curve at " + c.length_label });
      axes(svg, "needle depth in the context");
      fig.appendChild(svg);
      grid.appendChild(fig);
      panels[key] = { svg: svg, models: [] };
    }
    panels[key].models.push(c.model);
    drawCurve(panels[key].svg, c);
  });
  Object.keys(panels).forEach(function (key) {
    var p = panels[key];
    drawFloors(p.svg, key.split("/")[0], p.models);
  });

  // ------------------------------------------------------------ depth x length heatmaps
  function heat(v) {
    if (v === null) return "#eee";
    var t = Math.max(0, Math.min(1, v / 100));
    var r = Math.round(215 - 170 * t), gr = Math.round(48 + 130 * t), bl = Math.round(39 + 60 * t);
    return "rgb(" + r + "," + gr + "," + bl + ")";
  }
  var heatGroups = {};
  D.curves.forEach(function (c) {
    if (c.length === null) return;
    var k = c.model + "\u0000" + c.task;
    (heatGroups[k] = heatGroups[k] || []).push(c);
  });
  var heatKeys = Object.keys(heatGroups).filter(function (k) {
    var g = heatGroups[k];
    return g.length > 1 && g.every(function (c) { return c.n_buckets === g[0].n_buckets; });
  });
  if (heatKeys.length) {
    var hs = section("Depth x context length", "heatmaps");
    hs.appendChild(el("p", { class: "note" },
      "Each cell: a bucket's mean score (x100) at one context length; red 0, green 100. Click a cell."));
    var hgrid = el("div", { class: "panels" });
    hs.appendChild(hgrid);
    heatKeys.forEach(function (k) {
      var g = heatGroups[k].slice().sort(function (a, b) { return a.length - b.length; });
      var nb = g[0].n_buckets, cw = 56, ch = 18, left = 58, top = 8;
      var w = left + cw * g.length + 10, h = top + ch * nb + 34;
      var fig = el("figure", { class: "panel heat", "data-model": g[0].model });
      fig.appendChild(el("figcaption", {}, g[0].model + " — " + taskTitle(g[0].task)));
      var svg = sv("svg", { viewBox: "0 0 " + w + " " + h, class: "heatmap", role: "img" });
      g.forEach(function (c, j) {
        c.buckets.forEach(function (b) {
          var rect = sv("rect", { x: left + j * cw, y: top + b.i * ch, width: cw - 2, height: ch - 2,
            class: "cell", "data-bucket": b.i, fill: heat(b.mean) });
          var lines = [c.model, taskName(c.task) + " " + c.length_label + ", bucket " + b.i,
            "score " + fmt(b.mean) + (b.lo !== null ? " (95% CI " + fmt(b.lo) + "-" + fmt(b.hi) + ")" : "")];
          rect.addEventListener("mousemove", function (ev) { showTip(ev, lines); });
          rect.addEventListener("mouseleave", hideTip);
          rect.addEventListener("click", function () { drill(c, b.i, rect); });
          svg.appendChild(rect);
        });
        var t = sv("text", { x: left + j * cw + cw / 2, y: top + nb * ch + 14, class: "tick",
          "text-anchor": "middle" });
        t.textContent = c.length_label;
        svg.appendChild(t);
      });
      for (var i = 0; i < nb; i++) {
        if (nb > 8 && i % 2) continue;
        var t = sv("text", { x: left - 6, y: top + i * ch + ch / 2 + 3, class: "tick", "text-anchor": "end" });
        t.textContent = Math.round(100 * (i + 0.5) / nb) + "%";
        svg.appendChild(t);
      }
      fig.appendChild(svg);
      hgrid.appendChild(fig);
    });
  }

  // ------------------------------------------------------------ tables
  function table(head, rows, cls) {
    var t = el("table", { class: cls || "" });
    var tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", {}, h)); });
    var thead = el("thead");
    thead.appendChild(tr);
    t.appendChild(thead);
    var tb = el("tbody");
    rows.forEach(function (r) {
      var row = el("tr", r.model ? { "data-model": r.model } : {});
      r.cells.forEach(function (c) { row.appendChild(el("td", {}, c)); });
      tb.appendChild(row);
    });
    t.appendChild(tb);
    return t;
  }
  var tasks = D.tasks.map(function (t) { return t.task; });
  var anyFloor = D.table1.some(function (r) {
    return tasks.some(function (t) { return r.cells[t] && r.cells[t].above_floor !== null; });
  });
  var t1 = section("Table 1", "table1");
  var head = ["Model", "Context"];
  tasks.forEach(function (t) {
    head.push(taskName(t) + " Avg", taskName(t) + " Gap↓");
    if (anyFloor) head.push(taskName(t) + " above floor");
  });
  head.push("All Avg", "All Gap↓");
  t1.appendChild(table(head, D.table1.map(function (r) {
    var cells = [r.model, r.lengths.join("/") || "–"];
    tasks.forEach(function (t) {
      var c = r.cells[t];
      cells.push(fmt(c && c.avg), fmt(c && c.gap));
      if (anyFloor) cells.push(fmt(c && c.above_floor));
    });
    cells.push(fmt(r.all_avg), fmt(r.all_gap));
    return { model: r.model, cells: cells };
  }), "num"));
  t1.appendChild(el("p", { class: "note" }, "Avg = mean of the bucket means, Gap = max - min (x100); " +
    "All = mean over the three tasks." + (anyFloor ? " Above floor = Avg minus the higher of the " +
    "closed-book and constant-answer floors (what reading the context adds)." : "")));

  if (D.effective.length) {
    var es = section("Effective context length", "effective");
    var e0 = D.effective[0];
    es.appendChild(el("p", { class: "note" }, "Ours: longest tested length up to which every length has avg >= " +
      e0.min_avg + " and CI gap <= " + e0.max_gap + "; 95% bounds: the same with every interval inside " +
      "(low) or reaching (high) the thresholds. RULER: avg above a reference model's short-context " +
      "score; NoLiMa: avg >= 85% of the model's own shortest-length avg; point [95% bounds]. " +
      "Tested: avg / CI gap, ✓ passes (docs/plots.md)."));
    var peerHead = e0.peers.map(function (p) { return p.name + " (" + p.rule + ")"; });
    es.appendChild(table(["Model", "Task", "Effective", "95% bounds"].concat(peerHead, ["Tested"]),
      D.effective.map(function (e) {
        return { model: e.model, cells: [e.model, taskName(e.task), e.effective, e.bounds].concat(
          e.peers.map(function (p) { return p.text; }), [e.checks.map(function (c) {
            return c.length + " " + fmt(c.avg) + "/" + fmt(c.ci_gap) + (c.passes ? " ✓" : "");
          }).join(", ") + (e.uses_ci ? "" : " (no CIs: plain gap)")]) };
      })));
  }

  if (D.gate.length) {
    var gs = section("CI gate against the baseline", "gate");
    D.gate.forEach(function (b) {
      var v = el("p", { class: "verdict " + (b.passed === true ? "pass" : b.passed === false ? "fail" : "") },
        b.verdict);
      gs.appendChild(v);
      (b.notes || []).forEach(function (n) { gs.appendChild(el("p", { class: "note" }, n)); });
      if (b.table) gs.appendChild(el("pre", { class: "gate-table" }, b.table));
    });
  }

  var costed = D.curves.filter(function (c) { return c.cost; });
  if (costed.length) {
    var cs = section("Cost", "cost");
    cs.appendChild(el("p", { class: "note" }, "Prompt tokens: context + instruction (the probes' " +
      "tokenizer; the chat template not counted). Shareable: context tokens a prefix cache can serve " +
      "(every question of a context but the first). Cached: what the backend reported it served " +
      "(lm-eval's backends report nothing: –). Seconds: the whole lm-eval run, in Provenance."));
    cs.appendChild(table(["Model", "Task", "Context", "Questions", "Prompt tokens", "Shareable",
      "Cached", "Generated tokens", "Per question"], costed.map(function (c) {
      var t = c.cost.total;
      var per = t.prompt_tokens === null ? "–" : tokens(Math.round(t.prompt_tokens / t.questions)) + " + " +
        (t.generation_tokens === null ? "?" : tokens(Math.round(t.generation_tokens / t.questions)));
      return { model: c.model, cells: [c.model, taskName(c.task), c.length_label, t.questions,
        tokens(t.prompt_tokens), tokens(t.shared_prefix_tokens),
        t.cached_tokens === null ? "–" : tokens(t.cached_tokens), tokens(t.generation_tokens), per] };
    }), "num"));
  }

  var ps = section("Provenance", "provenance");
  function stack(p) {
    var v = null;
    Object.keys(p.tasks).forEach(function (t) { v = v || p.tasks[t].versions; });
    if (!v) return "–";
    return ["val-probing", "vllm", "torch", "tokenizers", "python"].filter(function (k) { return v[k]; })
      .map(function (k) { return k + " " + v[k]; }).join(", ") || "–";
  }
  ps.appendChild(table(["Model", "Backend", "Lengths", "Date", "Seconds", "lm-eval", "transformers",
    "Other versions", "Probe hashes", "File"], D.provenance.map(function (p) {
    var hashes = Object.keys(p.tasks).map(function (t) {
      var x = p.tasks[t];
      return t + " " + (x.probe_hash || "–") + (x.closed_book ? " (closed book)" : "");
    }).join("; ");
    return { model: p.model, cells: [p.model_name, p.backend || "–", p.lengths.join(", "), p.date || "–",
      p.seconds === null || p.seconds === undefined ? "–" : p.seconds.toFixed(0), p.lm_eval_version || "–", p.transformers_version || "–", stack(p), hashes, p.file] };
  })));
  D.provenance.forEach(function (p) {
    var extra = { model_args: p.model_args };
    Object.keys(p.tasks).forEach(function (t) { if (p.tasks[t].versions) extra[t] = p.tasks[t].versions; });
    var det = el("details");
    det.appendChild(el("summary", {}, "settings and versions: " + p.file));
    det.appendChild(el("pre", {}, JSON.stringify(extra, null, 1)));
    ps.appendChild(det);
  });

  // ------------------------------------------------------------ drill-down
  var drillBox = el("section", { id: "drill", hidden: "" });
  app.insertBefore(drillBox, t1);

  function answerCell(a) {
    var td = el("td", { class: "answer" });
    if (!a) { td.textContent = "not asked"; return td; }
    var text = a[0], span = el("span", {}, text.length > SHOWN ? text.slice(0, SHOWN) + "…" : text);
    td.appendChild(span);
    if (text.length > SHOWN || a[2]) {
      var more = el("button", { type: "button", class: "more" }, "more");
      var open = false;
      more.addEventListener("click", function () {
        open = !open;
        span.textContent = open ? text + (a[2] ? " [cut at " + text.length + " characters in this page]" : "")
          : text.slice(0, SHOWN) + "…";
        more.textContent = open ? "less" : "more";
      });
      td.appendChild(more);
    }
    return td;
  }

  function drill(c, bucket, from) {
    var old = document.querySelectorAll(".sel");
    for (var k = 0; k < old.length; k++) old[k].classList.remove("sel");
    if (from) from.classList.add("sel");
    var qs = D.questions[c.qset];
    drillBox.textContent = "";
    drillBox.hidden = false;
    var lo = (100 * bucket / c.n_buckets).toFixed(0), hi = (100 * (bucket + 1) / c.n_buckets).toFixed(0);
    drillBox.appendChild(el("h2", {}, taskTitle(c.task) + " " + c.length_label + ", bucket " + bucket +
      " (needle depth " + lo + "-" + hi + "%)"));
    var close = el("button", { type: "button", class: "close" }, "close");
    close.addEventListener("click", function () { drillBox.hidden = true; });
    drillBox.appendChild(close);
    if (!qs) {
      drillBox.appendChild(el("p", { class: "note" },
        "No questions in this page for this run: it was saved without --log_samples."));
      drillBox.scrollIntoView({ block: "start" });
      return;
    }
    var models = D.models.filter(function (m) { return qs.answers[m] && !hidden[m]; });
    if (models.indexOf(c.model) < 0) models.unshift(c.model);
    var pair = models.length === 2;
    var rows = [];
    qs.rows.forEach(function (q, i) {
      if (Math.floor(q[1] * c.n_buckets / q[2]) !== bucket) return;
      var asked = models.map(function (m) { return (qs.answers[m] || [])[i] || null; });
      if (!asked.some(function (a) { return a; })) return;
      rows.push({ q: q, a: asked });
    });
    function score(a) { return a ? a[1] : null; }
    if (pair) {
      rows.forEach(function (r) {
        var s0 = score(r.a[0]), s1 = score(r.a[1]);
        r.change = s0 === null || s1 === null ? 0 : s1 - s0;
        r.kind = s0 === null || s1 === null ? "" : s0 >= 0.5 && s1 < 0.5 ? "right → wrong" :
          s0 < 0.5 && s1 >= 0.5 ? "wrong → right" : s1 === s0 ? "same" : (s1 > s0 ? "+" : "") +
          (100 * (s1 - s0)).toFixed(0);
      });
      rows.sort(function (x, y) { return x.change - y.change || x.q[3] - y.q[3]; });
    } else {
      rows.sort(function (x, y) { return (score(x.a[0]) || 0) - (score(y.a[0]) || 0) || x.q[3] - y.q[3]; });
    }
    var n = pair ? rows.filter(function (r) { return r.kind === "right → wrong"; }).length : 0;
    var bcost = c.cost && c.cost.buckets[String(bucket)];
    if (bcost) drillBox.appendChild(el("p", { class: "note" }, c.model + ", this bucket: " +
      tokens(bcost.prompt_tokens) + " prompt tokens (" + tokens(bcost.shared_prefix_tokens) +
      " shareable by a prefix cache), " + tokens(bcost.generation_tokens) + " generated."));
    drillBox.appendChild(el("p", { class: "note" }, rows.length + " questions" + (pair ? "; " + models[0] +
      " → " + models[1] + ": " + n + " right → wrong, listed first" : ", lowest scores first") + ". Score x100."));
    var t = el("table", { class: "questions" });
    var hr = el("tr");
    var cols = ["depth", "set", "key", "gold"];
    models.forEach(function (m) { cols.push(m + ": answer", "score"); });
    if (pair) cols.push("change");
    cols.forEach(function (h) { hr.appendChild(el("th", {}, h)); });
    var thead = el("thead");
    thead.appendChild(hr);
    t.appendChild(thead);
    var tb = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr", { class: "q" + (r.kind === "right → wrong" ? " worse" : "") });
      tr.appendChild(el("td", {}, (100 * r.q[3]).toFixed(1) + "%"));
      tr.appendChild(el("td", {}, r.q[0]));
      tr.appendChild(el("td", { class: "text" }, r.q[4]));
      tr.appendChild(el("td", { class: "text" }, r.q[5]));
      r.a.forEach(function (a) {
        tr.appendChild(answerCell(a));
        tr.appendChild(el("td", { class: "score" }, a ? fmt(100 * a[1], 0) : "–"));
      });
      if (pair) tr.appendChild(el("td", {}, r.kind));
      tb.appendChild(tr);
    });
    t.appendChild(tb);
    drillBox.appendChild(t);
    drillBox.scrollIntoView({ block: "start" });
  }
  applyHidden();
})();
