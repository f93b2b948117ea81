// The review view of the curate report (curate/report/review.py). Allowed by its sha256 in
// the page's Content-Security-Policy. Every value from the data is set with textContent or
// as a property, never parsed as markup.
(function () {
  "use strict";
  var CARD_W = 228, CARD_H = 262, OVERSCAN = 2, PATH_CHARS = 28;
  var dataEl = document.getElementById("rv-data");
  var listEl = document.getElementById("rv-list");
  if (!dataEl || !listEl) { return; }
  var D = JSON.parse(dataEl.textContent);
  var N = D.id.length;
  var F = D.face || null;  // the face screens' measures: yaw (|degrees|), occlusion, score
  var spacer = document.getElementById("rv-spacer");
  var progress = document.getElementById("rv-progress");
  var sel = {
    reason: document.getElementById("rv-reason"), cls: document.getElementById("rv-class"),
    sugg: document.getElementById("rv-suggested"), min: document.getElementById("rv-min"),
    dec: document.getElementById("rv-decision"), sort: document.getElementById("rv-sort")
  };
  var thumbs = null;
  function thumb(t) {
    if (thumbs === null) { thumbs = JSON.parse(document.getElementById("rv-thumbs").textContent); }
    return thumbs[t];
  }

  // ------------------------------------------------------------ decisions, saved per run
  var KEY = "curate-review:" + D.run;
  var stored = false, decisions = {};
  try {
    var saved = window.localStorage.getItem(KEY);
    decisions = saved ? JSON.parse(saved) : JSON.parse(JSON.stringify(D.decisions));
    stored = true;
  } catch (e) { decisions = JSON.parse(JSON.stringify(D.decisions)); }
  function save() {
    if (!stored) { return; }
    try { window.localStorage.setItem(KEY, JSON.stringify(decisions)); } catch (e) { stored = false; }
  }

  // ------------------------------------------------------------ per-row helpers
  var codesOf = D.reasons.map(function (r) { return r.split(";"); });
  var allCodes = [];
  codesOf.forEach(function (cs) { cs.forEach(function (c) { if (allCodes.indexOf(c) < 0) { allCodes.push(c); } }); });
  allCodes.sort();
  function susp(i) { var s = D.suspicion[i]; return s === null ? -1 : s; }
  function flagged(i) { return D.flagged[i] === 1; }
  function path(i) { return D.dirs[D.dir[i]] + D.name[i]; }
  function verdict(i) { return D.reason[i] ? D.reasons[D.reason[i] - 1] : "kept"; }
  function fmt(x) { return x === null ? "n/a" : x.toFixed(2); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function option(select, value, text) { var o = el("option", null, text); o.value = value; select.appendChild(o); }

  // ------------------------------------------------------------ the filter controls
  var nFlagged = 0, nRejected = 0;
  for (var i = 0; i < N; i++) { if (flagged(i)) { nFlagged++; } if (D.rejected[i] === 1) { nRejected++; } }
  option(sel.reason, "review", "to review: rejected or suspect (" + nFlagged + ")");
  option(sel.reason, "all", "all images (" + N + ")");
  option(sel.reason, "rejected", "rejected by a screen (" + nRejected + ")");
  option(sel.reason, "kept", "kept by the screens (" + (N - nRejected) + ")");
  allCodes.forEach(function (c) { option(sel.reason, "code:" + c, "reason: " + c); });
  option(sel.cls, "", "any");
  option(sel.sugg, "", "any");
  option(sel.sugg, "differs", "differs from the label");
  D.classes.forEach(function (c, k) { option(sel.cls, String(k), c); option(sel.sugg, String(k), c); });
  [["", "any"], ["none", "undecided"], ["keep", "keep"], ["drop", "drop"], ["relabel", "relabel"]]
    .forEach(function (p) { option(sel.dec, p[0], p[1]); });
  [["susp", "suspicion, highest first"], ["id", "image id"], ["class", "class, then suspicion"]]
    .forEach(function (p) { option(sel.sort, p[0], p[1]); });
  if (F && F.score.some(function (x) { return x !== null; })) {
    option(sel.sort, "face", "nearest a face threshold");
  }

  // ------------------------------------------------------------ sorting and filtering
  var orders = {};
  function order(kind) {
    if (orders[kind]) { return orders[kind]; }
    var idx = new Array(N);
    for (var k = 0; k < N; k++) { idx[k] = k; }
    if (kind === "susp") {
      idx.sort(function (a, b) { return susp(b) - susp(a) || D.id[a] - D.id[b]; });
    } else if (kind === "face") {
      // |log(score)|: 0 on the line (--max-yaw or --max-occlusion), larger either side of it
      var near = function (i) { var x = F.score[i]; return x === null || x <= 0 ? Infinity : Math.abs(Math.log(x)); };
      idx.sort(function (a, b) { return near(a) - near(b) || D.id[a] - D.id[b]; });
    } else if (kind === "class") {
      idx.sort(function (a, b) { return D.label[a] - D.label[b] || susp(b) - susp(a) || D.id[a] - D.id[b]; });
    } else {
      idx.sort(function (a, b) { return D.id[a] - D.id[b]; });
    }
    orders[kind] = Int32Array.from(idx);
    return orders[kind];
  }
  var list = new Int32Array(0), cur = 0;
  function matches(i, f) {
    if (f.reason === "review" && !flagged(i)) { return false; }
    if (f.reason === "rejected" && D.rejected[i] !== 1) { return false; }
    if (f.reason === "kept" && D.rejected[i] === 1) { return false; }
    if (f.code !== null && (!D.reason[i] || codesOf[D.reason[i] - 1].indexOf(f.code) < 0)) { return false; }
    if (f.cls >= 0 && D.label[i] !== f.cls) { return false; }
    if (f.sugg === -2 && (D.suggested[i] < 0 || D.suggested[i] === D.label[i])) { return false; }
    if (f.sugg >= 0 && D.suggested[i] !== f.sugg) { return false; }
    if (f.min > 0 && susp(i) < f.min) { return false; }
    if (f.dec) {
      var d = decisions[D.id[i]];
      if (f.dec === "none" ? d !== undefined : (d === undefined || d[0] !== f.dec)) { return false; }
    }
    return true;
  }
  function applyFilters() {
    var t0 = performance.now();
    var r = sel.reason.value;
    var f = {
      reason: r, code: r.indexOf("code:") === 0 ? r.slice(5) : null,
      cls: sel.cls.value === "" ? -1 : Number(sel.cls.value),
      sugg: sel.sugg.value === "" ? -1 : (sel.sugg.value === "differs" ? -2 : Number(sel.sugg.value)),
      min: Number(sel.min.value) || 0, dec: sel.dec.value
    };
    var ord = order(sel.sort.value), out = new Int32Array(N), n = 0;
    for (var k = 0; k < N; k++) { if (matches(ord[k], f)) { out[n++] = ord[k]; } }
    list = out.subarray(0, n);
    cur = 0;
    listEl.scrollTop = 0;
    layout();
    listEl.dataset.filterMs = (performance.now() - t0).toFixed(1);
  }

  // ------------------------------------------------------------ drawing only what is visible
  var cols = 1;
  function layout() {
    cols = Math.max(1, Math.floor(listEl.clientWidth / CARD_W));
    spacer.style.height = (Math.ceil(list.length / cols) * CARD_H) + "px";
    draw();
  }
  function draw() {
    var top = listEl.scrollTop, h = listEl.clientHeight || 600;
    var first = Math.max(0, Math.floor(top / CARD_H) - OVERSCAN);
    var last = Math.ceil((top + h) / CARD_H) + OVERSCAN;
    var cards = [];
    for (var k = first * cols; k < Math.min(list.length, last * cols); k++) { cards.push(card(k)); }
    spacer.replaceChildren.apply(spacer, cards);
    showProgress();
  }
  function measure(code, i) {
    // how far the face screens' measure went, so a curator can tell a borderline reject
    if (!F) { return ""; }
    if (code === "side_face" && F.yaw[i] !== null) { return " " + F.yaw[i].toFixed(1) + "\u00b0"; }
    if (code === "occluded" && F.occlusion[i] !== null) { return " " + F.occlusion[i].toFixed(2); }
    return "";
  }
  function chip(code, i) {
    var c = el("span", "chip", code + (i === undefined ? "" : measure(code, i)));
    c.style.background = D.colors[code] || (code === "kept" ? "#2ca02c" : "#777");
    return c;
  }
  function card(k) {
    var i = list[k], id = D.id[i], d = decisions[id];
    var box = el("div", "rv-card" + (d ? " rv-" + d[0] : "") + (k === cur ? " rv-cur" : ""));
    box.dataset.pos = String(k);
    box.dataset.id = String(id);
    box.style.left = ((k % cols) * CARD_W) + "px";
    box.style.top = (Math.floor(k / cols) * CARD_H) + "px";
    var pic = el("div", "rv-img");
    if (D.thumb[i] >= 0) {
      var img = el("img");
      img.alt = path(i);
      img.src = thumb(D.thumb[i]);
      pic.appendChild(img);
    } else {
      pic.appendChild(el("span", "missing", "no thumbnail: kept by the screens"));
    }
    box.appendChild(pic);
    box.appendChild(el("div", "rv-id", "#" + id + " \u00b7 suspicion " + fmt(D.suspicion[i])));
    var l1 = el("div", null, "labelled ");
    l1.appendChild(el("b", null, D.classes[D.label[i]]));
    box.appendChild(l1);
    var l2 = el("div");
    if (D.suggested[i] >= 0) {
      l2.appendChild(document.createTextNode("looks like "));
      l2.appendChild(el("b", null, D.classes[D.suggested[i]]));
    }
    box.appendChild(l2);
    var chips = el("div", "rv-chips");
    (D.reason[i] ? codesOf[D.reason[i] - 1] : ["kept"]).forEach(function (c) { chips.appendChild(chip(c, i)); });
    if (F && (F.yaw[i] !== null || F.occlusion[i] !== null)) {
      chips.title = "|yaw| " + (F.yaw[i] === null ? "n/a" : F.yaw[i].toFixed(1) + "\u00b0") +
        ", occlusion " + (F.occlusion[i] === null ? "n/a" : F.occlusion[i].toFixed(2));
    }
    box.appendChild(chips);
    var full = path(i);
    var p = el("div", "rv-path", full.length > PATH_CHARS ? "\u2026" + full.slice(-(PATH_CHARS - 1)) : full);
    p.title = full;
    box.appendChild(p);
    var acts = el("div", "rv-acts");
    var keep = el("button", "rv-keep", "keep"); keep.type = "button"; keep.dataset.act = "keep";
    var drop = el("button", "rv-drop", "drop"); drop.type = "button"; drop.dataset.act = "drop";
    var pick = el("select", "rv-pick");
    D.classes.forEach(function (c, j) { option(pick, String(j), c); });
    pick.value = String(d && d[0] === "relabel" ? d[1] : (D.suggested[i] >= 0 ? D.suggested[i] : D.label[i]));
    var rel = el("button", "rv-relabel", "relabel"); rel.type = "button"; rel.dataset.act = "relabel";
    acts.appendChild(keep); acts.appendChild(drop); acts.appendChild(pick); acts.appendChild(rel);
    box.appendChild(acts);
    box.appendChild(el("div", "rv-state", d ? (d[0] === "relabel" ? "relabel \u2192 " + D.classes[d[1]] : d[0]) : ""));
    return box;
  }
  function showProgress() {
    var done = 0, c = { keep: 0, drop: 0, relabel: 0 };
    for (var k = 0; k < list.length; k++) { if (decisions[D.id[list[k]]] !== undefined) { done++; } }
    Object.keys(decisions).forEach(function (id) { c[decisions[id][0]]++; });
    progress.textContent = done + " of " + list.length + " reviewed \u00b7 decisions in all: " + c.keep +
      " keep, " + c.drop + " drop, " + c.relabel + " relabel \u00b7 " +
      (stored ? "saved in this browser" : "NOT saved (this browser blocks storage): download them before closing");
  }

  // ------------------------------------------------------------ deciding
  function decide(k, what, label) {
    if (k < 0 || k >= list.length) { return; }
    var i = list[k], id = D.id[i];
    if (what === null) { delete decisions[id]; }
    else if (what === "relabel") {
      if (label === D.label[i]) { decisions[id] = ["keep"]; } else { decisions[id] = ["relabel", label]; }
    } else { decisions[id] = [what]; }
    save();
  }
  function chosenLabel(k) {
    var box = spacer.querySelector('.rv-card[data-pos="' + k + '"] .rv-pick');
    var i = list[k];
    return box ? Number(box.value) : (D.suggested[i] >= 0 ? D.suggested[i] : D.label[i]);
  }
  function moveTo(k) {
    cur = Math.max(0, Math.min(list.length - 1, k));
    var row = Math.floor(cur / cols);
    if (row * CARD_H < listEl.scrollTop) { listEl.scrollTop = row * CARD_H; }
    else if ((row + 1) * CARD_H > listEl.scrollTop + listEl.clientHeight) {
      listEl.scrollTop = (row + 1) * CARD_H - listEl.clientHeight;
    }
    draw();
  }
  listEl.addEventListener("scroll", draw, { passive: true });
  window.addEventListener("resize", layout);
  listEl.addEventListener("click", function (e) {
    var box = e.target.closest(".rv-card");
    if (!box) { return; }
    var k = Number(box.dataset.pos), act = e.target.dataset ? e.target.dataset.act : undefined;
    cur = k;
    if (act === "keep" || act === "drop") { decide(k, act); }
    else if (act === "relabel") { decide(k, "relabel", chosenLabel(k)); }
    if (e.target.tagName !== "SELECT") { listEl.focus({ preventScroll: true }); }
    draw();
  });
  listEl.addEventListener("change", function (e) {
    if (!e.target.classList.contains("rv-pick")) { return; }
    var k = Number(e.target.closest(".rv-card").dataset.pos);
    cur = k;
    decide(k, "relabel", Number(e.target.value));
    listEl.focus({ preventScroll: true });  // the keys work again at once
    draw();
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var t = e.target.tagName;
    if (t === "INPUT" || t === "SELECT" || t === "TEXTAREA") { return; }
    var r = listEl.getBoundingClientRect();
    if (r.bottom < 0 || r.top > window.innerHeight || !list.length) { return; }
    var key = e.key, handled = true;
    if (key === "k") { decide(cur, "keep"); moveTo(cur + 1); }
    else if (key === "d") { decide(cur, "drop"); moveTo(cur + 1); }
    else if (key === "r") { decide(cur, "relabel", chosenLabel(cur)); moveTo(cur + 1); }
    else if (key === "u") { decide(cur, null); draw(); }
    else if (key >= "1" && key <= "9" && Number(key) <= D.classes.length) {
      decide(cur, "relabel", Number(key) - 1); moveTo(cur + 1);
    }
    else if (key === "ArrowRight" || key === "j") { moveTo(cur + 1); }
    else if (key === "ArrowLeft") { moveTo(cur - 1); }
    else if (key === "ArrowDown") { moveTo(cur + cols); }
    else if (key === "ArrowUp") { moveTo(cur - cols); }
    else { handled = false; }
    if (handled) { e.preventDefault(); }
  });
  [sel.reason, sel.cls, sel.sugg, sel.dec, sel.sort].forEach(function (s) { s.addEventListener("change", applyFilters); });
  sel.min.addEventListener("change", applyFilters);

  // ------------------------------------------------------------ decisions.csv
  var FORMULA = /^[=+\-@\t\r]/;
  function cell(v) {
    var s = String(v);
    if (typeof v === "string" && FORMULA.test(s)) { s = "'" + s; }  // a spreadsheet shows it as text
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function csv() {
    var row = {};
    for (var k = 0; k < N; k++) { row[D.id[k]] = k; }
    var ids = Object.keys(decisions).map(Number).filter(function (id) { return row[id] !== undefined; });
    ids.sort(function (a, b) { return a - b; });
    var lines = ["image_id,path,decision,label,verdict,suspicion"];
    ids.forEach(function (id) {
      var i = row[id], d = decisions[id];
      lines.push([id, cell(path(i)), d[0], d[0] === "relabel" ? cell(D.classes[d[1]]) : "", cell(verdict(i)),
                  D.suspicion[i] === null ? "" : D.suspicion[i]].join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }
  document.getElementById("rv-download").addEventListener("click", function () {
    var a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([csv()], { type: "text/csv;charset=utf-8" }));
    a.download = "decisions.csv";
    document.body.appendChild(a);
    a.click();
    window.setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 2000);
  });

  applyFilters();
  listEl.dataset.ready = "1";
})();
