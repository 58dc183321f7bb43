// pnas dashboard: live fragments (no full reload), the children table's sorting, filtering
// and paging, the charts (uPlot, from the JSON API) and the confirmed actions.
"use strict";
(function () {
  const every = Number(document.body.dataset.refreshMs || 3000);
  window.pnasCharts = {};

  function childrenQuery(box) {
    const p = new URLSearchParams();
    const form = document.getElementById("children-filters");
    if (form) for (const [k, v] of new FormData(form)) if (v !== "") p.set(k, v);
    p.set("sort", box.dataset.sort || "accuracy");
    p.set("order", box.dataset.order || "desc");
    if (box.dataset.offset && box.dataset.offset !== "0") p.set("offset", box.dataset.offset);
    return p.toString();
  }
  function childrenUrl(box) { return box.dataset.refresh + "?" + childrenQuery(box); }
  // The table's sort, filters and page live in the address too: a reload or a shared link
  // opens the same view.
  function keepInAddress(box) { history.replaceState(null, "", location.pathname + "?" + childrenQuery(box)); }

  async function refresh(box) {
    const url = box.id === "children" ? childrenUrl(box) : box.dataset.refresh;
    const resp = await fetch(url, { headers: { Accept: "text/html" } });
    if (!resp.ok) return;
    const html = await resp.text();
    if (html !== box.innerHTML) box.innerHTML = html;
    box.dataset.updated = String(Date.now());
  }

  function refreshAll() {
    if (document.hidden) return;
    document.querySelectorAll("[data-refresh]").forEach(b => refresh(b).catch(() => {}));
    drawCharts().catch(() => {});
  }

  // Children table: click a header to sort (again to reverse), filters and pages reload it.
  document.addEventListener("click", ev => {
    const th = ev.target.closest("#children th[data-sort]");
    const box = document.getElementById("children");
    if (th && box) {
      const key = th.dataset.sort;
      const numeric = ["accuracy", "test_accuracy", "epochs", "predicted", "params", "seconds", "attempts"].includes(key);
      box.dataset.order = box.dataset.sort === key ? (box.dataset.order === "asc" ? "desc" : "asc") : (numeric ? "desc" : "asc");
      box.dataset.sort = key;
      box.dataset.offset = "0";
      keepInAddress(box);
      refresh(box);
      return;
    }
    const pg = ev.target.closest("#children a.page");
    if (pg && box) { ev.preventDefault(); box.dataset.offset = pg.dataset.offset; keepInAddress(box); refresh(box); return; }
    const act = ev.target.closest("button.action");
    if (act) doAction(act);
  });
  const form = document.getElementById("children-filters");
  if (form) {
    const reload = () => { const box = document.getElementById("children"); box.dataset.offset = "0"; keepInAddress(box); refresh(box); };
    form.addEventListener("input", reload);
    form.addEventListener("submit", ev => { ev.preventDefault(); reload(); });
  }

  function toast(text) {
    const t = document.getElementById("toast");
    t.textContent = text; t.classList.add("show");
    setTimeout(() => t.classList.remove("show"), 8000);
  }

  async function doAction(button) {
    if (!window.confirm(button.dataset.confirm || "Are you sure?")) return;
    const resp = await fetch(button.dataset.action, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    const body = await resp.json().catch(() => ({}));
    toast(resp.ok ? (body.lines || []).join("\n") : ("refused: " + (body.error || resp.status)));
    refreshAll();
  }

  // Charts ------------------------------------------------------------------------------
  const COLOURS = ["#1a5fb4", "#c64600", "#26a269", "#813d9c", "#a51d2d", "#986a44", "#0b7285"];
  const cache = {};
  async function getJSON(url) {
    if (!cache[url] || Date.now() - cache[url].t > every / 2) {
      cache[url] = { t: Date.now(), p: fetch(url).then(r => r.json()) };
    }
    return cache[url].p;
  }
  const dots = (label, stroke) => ({ label, stroke, paths: () => null, points: { show: true, size: 5, fill: stroke } });

  function bestSpec(d) {
    const mine = d.charts.best_so_far, base = d.charts.baseline;
    const n = Math.max(mine.length, base ? base.best_so_far.length : 0);
    const x = Array.from({ length: n }, (_, i) => i + 1);
    const data = [x, x.map((_, i) => i < mine.length ? mine[i] : null)];
    const series = [{ label: "children trained" }, { label: d.run.name + " (" + d.run.strategy + ")", stroke: COLOURS[0], width: 2 }];
    if (base) {
      data.push(x.map((_, i) => i < base.best_so_far.length ? base.best_so_far[i] : null));
      series.push({ label: base.name + " (" + base.strategy + ")", stroke: COLOURS[1], width: 2, dash: [6, 4] });
    }
    return { data, series, xlabel: "children trained", ylabel: "best accuracy" };
  }
  function levelsSpec(d) {
    // accuracy of every trained child against its level, spread a little sideways to be seen;
    // children a multi-fidelity run stopped early in grey apart: their accuracy is from fewer epochs
    const pts = d.charts.accuracy.map(([lv, acc, full], i) => [lv + (((i * 2654435761) % 1000) / 1000 - 0.5) * 0.5, acc, full]);
    pts.sort((a, b) => a[0] - b[0]);
    const early = pts.filter(p => !p[2]).length;
    const data = [pts.map(p => p[0]), pts.map(p => p[2] ? p[1] : null)];
    const series = [{ label: "level" }, dots(early ? "trained to the full " + d.charts.full_epochs + " epochs (" + (pts.length - early) + ")" : "accuracy", COLOURS[0])];
    if (early) {
      data.push(pts.map(p => p[2] ? null : p[1]));
      series.push(dots("stopped early, fewer epochs (" + early + ")", "#9aa0aa"));
    }
    return { data, series, xlabel: d.run.level_word === "generation" ? "generation" : "level (b)", ylabel: "accuracy", xincr: [1] };
  }
  function predSpec(d) {
    // [level, predicted, accuracy, trained to the full epochs]: a child a multi-fidelity run
    // stopped early measured fewer epochs than the prediction is of, so it is drawn in grey apart
    const rows = d.charts.predicted_vs_measured.slice().sort((a, b) => a[1] - b[1]);
    const full = rows.filter(r => r[3] !== false);
    const levels = [...new Set(full.map(r => r[0]))].sort((a, b) => a - b);
    const data = [rows.map(r => r[1])];
    const series = [{ label: "predicted" }];
    levels.forEach((lv, k) => {
      data.push(rows.map(r => r[0] === lv && r[3] !== false ? r[2] : null));
      series.push(dots("level " + lv, COLOURS[k % COLOURS.length]));
    });
    const early = rows.length - full.length;
    if (early) {
      data.push(rows.map(r => r[3] === false ? r[2] : null));
      series.push(dots("stopped early, fewer epochs (" + early + ")", "#9aa0aa"));
    }
    return { data, series, xlabel: "predicted accuracy", ylabel: "measured accuracy", empty: d.charts.predicted_vs_measured_note };
  }
  function curveSpec(c) {
    const n = Math.max(0, ...c.curves.flatMap(a => a.epochs.map(r => r.epoch)));  // epochs are absolute: a resumed or promoted attempt starts past 1
    const x = Array.from({ length: n }, (_, i) => i + 1);
    const data = [x], series = [{ label: "epoch" }];
    c.curves.forEach((a, k) => {
      const at = (key) => x.map(e => { const r = a.epochs.find(r => r.epoch === e); return r ? r[key] : null; });
      const tag = c.curves.length > 1 ? " #" + a.attempt : "";
      const col = (i) => COLOURS[(2 * k + i) % COLOURS.length];
      data.push(at("val_accuracy"), at("accuracy"), at("val_loss"), at("loss"));
      series.push({ label: "val acc" + tag, stroke: col(0), width: 2, points: { show: true, size: 6 }, scale: "acc" },
                  { label: "acc" + tag, stroke: col(1), width: 1, points: { show: true, size: 4 }, scale: "acc" },
                  { label: "val loss" + tag, stroke: col(0), width: 2, dash: [5, 4], points: { show: true, size: 4 }, scale: "loss" },
                  { label: "loss" + tag, stroke: col(1), width: 1, dash: [5, 4], points: { show: true, size: 4 }, scale: "loss" });
    });
    return { data, series, xlabel: "epoch", ylabel: "accuracy", y2: "loss", xincr: [1] };
  }
  // Accuracy against cost (the select picks parameters or FLOPs), the non-dominated front
  // marked: only children trained to the run's full epochs can be on it (as `pnas pareto`).
  const COST_WORD = { params: "parameters", flops: "FLOPs" };
  const COST_AXIS = { params: "parameters (count)", flops: "FLOPs (multiply-adds per image)" };
  const big = (n) => Number(n).toLocaleString("en-US");
  function costSpec(d) {
    const c = d.charts.cost, pick = document.getElementById("cost-axis"), cost = pick ? pick.value : "params";
    const pts = c.points.filter(p => p[cost] !== null && p[cost] !== undefined)
      .sort((a, b) => a[cost] - b[cost] || b.accuracy - a.accuracy || a.id - b.id);
    const ids = c.front[cost], onFront = new Set(ids);
    const full = pts.filter(p => p.full), early = pts.filter(p => !p.full);
    const data = [pts.map(p => p[cost]), pts.map(p => p.full ? p.accuracy : null)];
    const series = [{ label: COST_WORD[cost] },
                    dots("trained to the full " + c.full_epochs + " epochs (" + full.length + ")", COLOURS[0])];
    if (early.length) {
      data.push(pts.map(p => p.full ? null : p.accuracy));
      series.push(dots("stopped early, not on the front (" + early.length + ")", "#9aa0aa"));
    }
    data.push(pts.map(p => onFront.has(p.id) ? p.accuracy : null));
    series.push({ label: "non-dominated front (" + ids.length + ")", stroke: COLOURS[1], width: 2, spanGaps: true,
                  points: { show: true, size: 9, fill: COLOURS[1] } });
    const empty = c.note || "no trained child has its " + COST_WORD[cost] + " stored (runs made before costs were stored have none)";
    function after(drawn) {
      const note = document.getElementById("cost-note"), table = document.getElementById("front-table");
      if (!note || !table) return;
      note.textContent = !drawn ? "" : ids.length
        ? ids.length + " of the " + full.length + " children trained to the full " + c.full_epochs + " epochs are on the front: none other is both more accurate and cheaper in " + COST_WORD[cost]
          + (early.length ? "; " + early.length + " stopped early are drawn in grey, off the front" : "")
        : "no child trained to the full " + c.full_epochs + " epochs yet: no front to mark";
      table.style.display = drawn && ids.length ? "" : "none";
      table.querySelector("caption").textContent = "The front, cheapest first";
      table.querySelector("th.cost-name").textContent = COST_WORD[cost];
      const byId = new Map(pts.map(p => [p.id, p]));
      table.querySelector("tbody").innerHTML = ids.map(i => byId.get(i)).filter(Boolean).map(p =>
        '<tr data-id="' + p.id + '"><td class="n"><a href="/children/' + p.id + '">' + p.id + '</a></td><td class="n">' + p.level
        + '</td><td class="n">' + p.accuracy.toFixed(4) + '</td><td class="n">' + big(p[cost]) + "</td></tr>").join("");
    }
    return { data, series, xlabel: COST_AXIS[cost], ylabel: "accuracy (validation, fraction)", empty, after };
  }
  document.addEventListener("change", ev => { if (ev.target.id === "cost-axis") drawCharts().catch(err => console.error(err)); });
  const SPECS = { best: bestSpec, levels: levelsSpec, pred: predSpec, curve: curveSpec, cost: costSpec };

  async function drawCharts() {
    for (const el of document.querySelectorAll("[data-chart]")) {
      const d = await getJSON(el.dataset.src);
      const spec = SPECS[el.dataset.chart](d);
      const key = el.id.replace(/^chart-/, "");
      const shape = spec.xlabel + "|" + spec.series.map(s => s.label).join("|");
      const old = window.pnasCharts[key];
      if (old && old._shape === shape) { old.setData(spec.data); if (spec.after) spec.after(true); continue; }
      if (old) old.destroy();
      el.innerHTML = "";
      if (spec.data[0].length === 0) {
        el.textContent = spec.empty || el.dataset.empty || "no trained child yet"; delete window.pnasCharts[key];
        if (spec.after) spec.after(false);
        continue;
      }
      const xaxis = { label: spec.xlabel };
      if (spec.xincr) xaxis.incrs = spec.xincr;
      const axes = [xaxis, { label: spec.ylabel, scale: spec.series[1].scale || "y" }];
      if (spec.y2) axes.push({ label: spec.y2, scale: spec.y2, side: 1, grid: { show: false } });
      const scales = { x: { time: false } };
      const u = new uPlot({ width: 460, height: 280, series: spec.series, axes, scales, cursor: { drag: { x: true, y: false } } }, spec.data, el);
      u._shape = shape;
      window.pnasCharts[key] = u;
      if (spec.after) spec.after(true);
    }
  }

  drawCharts().catch(err => console.error(err));
  setInterval(refreshAll, every);
})();
