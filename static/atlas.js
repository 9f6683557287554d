/* atlasgen page behaviour. A classic script (no modules, no fetch) so every
 * page works from file:// as well as over HTTP. Each part starts only when its
 * elements are on the page; without JavaScript the pages stay fully readable. */
(function () {
  "use strict";

  function storageGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }
  function storageSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* private mode, file:// quirks */ }
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* ---- previous / next unit with the arrow keys */
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    var t = event.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(t.tagName))) return;
    var rel = event.key === "ArrowLeft" ? "prev" : event.key === "ArrowRight" ? "next" : null;
    if (!rel) return;
    var link = document.querySelector('a[rel~="' + rel + '"]');
    if (!link) return;
    event.preventDefault();
    window.location.href = link.href;
  });

  /* ---- heat-map toggle on example grids (visible by default, remembered) */
  Array.prototype.forEach.call(document.querySelectorAll("[data-heat-toggle]"), function (button) {
    var list = document.getElementById(button.getAttribute("data-heat-toggle"));
    if (!list) return;
    function apply(on) {
      list.classList.toggle("heat-on", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.textContent = on ? "Heat-maps on" : "Heat-maps off";
    }
    apply(storageGet("atlas.heatmaps") !== "off");
    button.hidden = false;
    button.addEventListener("click", function () {
      var on = !list.classList.contains("heat-on");
      apply(on);
      storageSet("atlas.heatmaps", on ? "on" : "off");
    });
  });

  /* ---- sortable unit grids (layer page) */
  Array.prototype.forEach.call(document.querySelectorAll("[data-sort-target]"), function (sorter) {
    var grid = document.getElementById(sorter.getAttribute("data-sort-target"));
    if (!grid) return;
    var buttons = sorter.querySelectorAll("button[data-sort]");
    function num(li, key) { return parseFloat(li.getAttribute("data-" + key)) || 0; }
    function sortBy(key) {
      var items = Array.prototype.slice.call(grid.children);
      items.sort(function (a, b) {
        var ia = num(a, "id"), ib = num(b, "id");
        if (key === "id") return ia - ib;
        return (num(b, key) - num(a, key)) || (ia - ib); // largest first, ties by id
      });
      var frag = document.createDocumentFragment();
      items.forEach(function (li) { frag.appendChild(li); });
      grid.appendChild(frag);
      Array.prototype.forEach.call(buttons, function (b) {
        b.setAttribute("aria-pressed", b.getAttribute("data-sort") === key ? "true" : "false");
      });
    }
    Array.prototype.forEach.call(buttons, function (b) {
      b.addEventListener("click", function () { sortBy(b.getAttribute("data-sort")); });
    });
    sorter.hidden = false;
  });

  /* ---- search over the prebuilt index (search_index.js -> window.ATLAS_SEARCH) */
  var searchInput = document.querySelector("[data-search]");
  if (searchInput && window.ATLAS_SEARCH) {
    var index = window.ATLAS_SEARCH;
    var results = document.getElementById("search-results");
    var status = document.getElementById("search-status");
    var MAX_RESULTS = 50;
    var features = index.features.map(function (f) {
      // [href, layer, id, label, classes]
      return { href: f[0], code: f[1] + "/f/" + f[2], id: String(f[2]), label: f[3], classes: f[4],
               hay: (f[3] + " " + f[4]).toLowerCase() };
    });
    var classes = index.classes.map(function (c) {
      return { href: c[0], name: c[1], superclass: c[2], hay: (c[1] + " " + c[2]).toLowerCase() };
    });
    var run = function () {
      var q = searchInput.value.trim().toLowerCase();
      results.textContent = "";
      if (!q) { status.textContent = ""; return; }
      var idQuery = q.replace(/^.*\bf\//, "").replace(/^#/, "");
      var words = q.split(/\s+/);
      var allIn = function (text) { return words.every(function (w) { return text.indexOf(w) >= 0; }); };
      var scored = [];
      features.forEach(function (f) {
        var label = f.label.toLowerCase(), score = -1;
        if (/^\d+$/.test(idQuery) && f.id === idQuery && (q.indexOf("/") < 0 || f.code.toLowerCase().slice(-q.length) === q)) score = 0;
        else if (f.code.toLowerCase() === q) score = 0;
        else if (label.indexOf(q) === 0) score = 1;
        else if (label.indexOf(q) >= 0) score = 2;
        else if (allIn(label)) score = 3;
        else if (allIn(f.hay)) score = 4; // words found in the label or its top classes
        if (score >= 0) scored.push({ score: score, item: f, kind: "f" });
      });
      classes.forEach(function (c) {
        var i = c.hay.indexOf(q);
        if (i >= 0) scored.push({ score: i === 0 ? 1 : 2, item: c, kind: "c" });
        else if (allIn(c.hay)) scored.push({ score: 3, item: c, kind: "c" });
      });
      scored.sort(function (a, b) { return a.score - b.score; }); // stable: index order within a score
      var shown = scored.slice(0, MAX_RESULTS);
      shown.forEach(function (r) {
        var li = el("li"), a = el("a");
        a.href = r.item.href;
        if (r.kind === "f") {
          a.appendChild(el("span", "r-code", r.item.code));
          a.appendChild(el("span", "r-label", r.item.label || "(no label)"));
          if (r.item.classes) a.appendChild(el("span", "r-extra", r.item.classes));
        } else {
          a.appendChild(el("span", "r-code", "class"));
          a.appendChild(el("span", "r-label", r.item.name));
          if (r.item.superclass) a.appendChild(el("span", "r-extra", r.item.superclass));
        }
        li.appendChild(a);
        results.appendChild(li);
      });
      status.textContent = scored.length === 0 ? "No match." :
        scored.length > shown.length ? "Showing " + shown.length + " of " + scored.length + " matches." :
        scored.length + (scored.length === 1 ? " match." : " matches.");
    };
    searchInput.addEventListener("input", run);
    if (searchInput.value) run();
  }

  /* ---- copy buttons in the citation box */
  Array.prototype.forEach.call(document.querySelectorAll(".cite .permalink, .cite .cite-text, .cite .bibtex"), function (node) {
    var button = el("button", "copy-btn", "copy");
    button.type = "button";
    button.addEventListener("click", function () {
      var text = node.textContent;
      var done = function () { button.textContent = "copied"; setTimeout(function () { button.textContent = "copy"; }, 1500); };
      var fallback = function () {
        var range = document.createRange();
        range.selectNodeContents(node);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        try { if (document.execCommand("copy")) done(); } catch (e) { /* text stays selected */ }
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
    });
    var dt = node.closest("dd") && node.closest("dd").previousElementSibling;
    if (dt) dt.appendChild(button);
  });

  /* ---- feature map (map/points.js -> window.ATLAS_MAP) */
  var canvas = document.getElementById("map-canvas");
  if (canvas && window.ATLAS_MAP && canvas.getContext) {
    initMap(canvas, window.ATLAS_MAP);
  }

  function initMap(canvas, M) {
    Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (n) { n.hidden = false; });
    var ctx = canvas.getContext("2d");
    var tip = document.getElementById("map-tip");
    var status = document.getElementById("map-status");
    var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                   "#b07aa1", "#ff9da7", "#9c755f", "#8cd17d", "#499894", "#d37295"];
    var pts = M.points; // [id, x, y, cluster, hasThumb]
    var byId = {};
    pts.forEach(function (p, k) { byId[p[0]] = k; });
    var view = { s: 1, cx: 0.5, cy: 0.5 };
    var highlight = -1, hover = -1;
    var W = 0, H = 0, dpr = 1;

    function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
    function base() { return Math.min(W, H) * 0.9; }
    function toScreen(x, y) { return [W / 2 + (x - view.cx) * base() * view.s, H / 2 + (y - view.cy) * base() * view.s]; }
    function toWorld(sx, sy) { return [view.cx + (sx - W / 2) / (base() * view.s), view.cy + (sy - H / 2) / (base() * view.s)]; }
    function hrefOf(id, pattern) { return pattern.replace("{id}", String(id)); }

    function resize() {
      dpr = window.devicePixelRatio || 1;
      W = canvas.clientWidth; H = canvas.clientHeight;
      canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
      draw();
    }

    function draw() {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, W, H);
      var r = Math.max(2.5, Math.min(7, 3 * Math.sqrt(view.s)));
      ctx.globalAlpha = highlight >= 0 ? 0.55 : 0.9;
      for (var k = 0; k < pts.length; k++) {
        var p = pts[k], s = toScreen(p[1], p[2]);
        if (s[0] < -10 || s[1] < -10 || s[0] > W + 10 || s[1] > H + 10) continue;
        ctx.fillStyle = p[3] >= 0 ? PALETTE[p[3] % PALETTE.length] : "#888";
        ctx.beginPath(); ctx.arc(s[0], s[1], r, 0, 2 * Math.PI); ctx.fill();
      }
      ctx.globalAlpha = 1;
      var text = css("--text") || "#000", bg = css("--surface") || "#fff";
      ctx.font = "600 13px system-ui, sans-serif";
      ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.lineJoin = "round"; ctx.lineWidth = 4;
      M.clusters.forEach(function (c, n) {
        var s = toScreen(c.x, c.y);
        ctx.strokeStyle = bg; ctx.strokeText(c.name, s[0], s[1]);
        ctx.fillStyle = text; ctx.fillText(c.name, s[0], s[1]);
      });
      [highlight, hover].forEach(function (k, which) {
        if (k < 0) return;
        var s = toScreen(pts[k][1], pts[k][2]);
        ctx.lineWidth = which === 0 ? 3 : 2;
        ctx.strokeStyle = which === 0 ? (css("--warm") || "#d9480f") : text;
        ctx.beginPath(); ctx.arc(s[0], s[1], r + 5, 0, 2 * Math.PI); ctx.stroke();
        if (which === 0) { // name the highlighted feature next to its ring
          var name = "f/" + pts[k][0] + (M.labels[k] ? " " + M.labels[k] : "");
          ctx.font = "600 13px system-ui, sans-serif"; ctx.lineWidth = 4;
          var left = s[0] + r + 10 + ctx.measureText(name).width > W - 4; // flip to the left near the edge
          ctx.textAlign = left ? "right" : "left";
          var tx = left ? s[0] - r - 10 : s[0] + r + 10;
          ctx.strokeStyle = bg; ctx.strokeText(name, tx, s[1]);
          ctx.fillStyle = text; ctx.fillText(name, tx, s[1]);
        }
      });
    }

    function nearest(sx, sy) {
      var best = -1, bestD = 12 * 12;
      for (var k = 0; k < pts.length; k++) {
        var s = toScreen(pts[k][1], pts[k][2]);
        var d = (s[0] - sx) * (s[0] - sx) + (s[1] - sy) * (s[1] - sy);
        if (d < bestD) { bestD = d; best = k; }
      }
      return best;
    }

    function showTip(k, sx, sy) {
      if (k < 0) { tip.hidden = true; return; }
      var p = pts[k];
      tip.textContent = "";
      if (p[4]) {
        var img = el("img"); img.src = hrefOf(p[0], M.thumb_href); img.alt = "";
        tip.appendChild(img);
      }
      tip.appendChild(el("div", "tip-code", "f/" + p[0]));
      tip.appendChild(el("div", "", M.labels[k] || "(no label)"));
      tip.hidden = false;
      var frame = canvas.getBoundingClientRect();
      var x = sx + 14, y = sy + canvas.offsetTop + 14;
      if (x + 230 > frame.width) x = Math.max(4, sx - 234);
      if (sy + 190 > H) y = Math.max(4, sy + canvas.offsetTop - 190);
      tip.style.left = x + "px"; tip.style.top = y + "px";
    }

    function zoomAt(factor, sx, sy) {
      var before = toWorld(sx, sy);
      view.s = Math.max(0.5, Math.min(60, view.s * factor));
      var after = toWorld(sx, sy);
      view.cx += before[0] - after[0]; view.cy += before[1] - after[1];
      draw();
    }

    function fromHash() {
      var m = /(?:^#|&)f=(\d+)/.exec(window.location.hash);
      highlight = m && byId.hasOwnProperty(m[1]) ? byId[m[1]] : -1;
      if (highlight >= 0) {
        view.s = Math.max(view.s, 3); view.cx = pts[highlight][1]; view.cy = pts[highlight][2];
        status.textContent = "f/" + pts[highlight][0] + (M.labels[highlight] ? ": " + M.labels[highlight] : "");
        canvas.setAttribute("data-highlight", String(pts[highlight][0]));
        canvas.scrollIntoView({ block: "center" });
      } else {
        status.textContent = "";
        canvas.removeAttribute("data-highlight");
      }
      draw();
    }

    var drag = null;
    canvas.addEventListener("pointerdown", function (e) {
      drag = { x: e.offsetX, y: e.offsetY, cx: view.cx, cy: view.cy, moved: false };
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", function (e) {
      if (drag) {
        var dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
        if (drag.moved) {
          view.cx = drag.cx - dx / (base() * view.s); view.cy = drag.cy - dy / (base() * view.s);
          tip.hidden = true; draw(); return;
        }
      }
      var k = nearest(e.offsetX, e.offsetY);
      if (k !== hover) { hover = k; draw(); }
      canvas.style.cursor = k >= 0 ? "pointer" : "crosshair";
      showTip(k, e.offsetX, e.offsetY);
    });
    canvas.addEventListener("pointerup", function (e) {
      var wasDrag = drag && drag.moved;
      drag = null;
      if (wasDrag) return;
      var k = nearest(e.offsetX, e.offsetY);
      if (k >= 0) window.location.href = hrefOf(pts[k][0], M.feature_href);
    });
    canvas.addEventListener("pointerleave", function () {
      if (!drag) { hover = -1; tip.hidden = true; draw(); }
    });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.offsetX, e.offsetY);
    }, { passive: false });
    Array.prototype.forEach.call(document.querySelectorAll("[data-map-zoom]"), function (b) {
      b.addEventListener("click", function () {
        var what = b.getAttribute("data-map-zoom");
        if (what === "reset") { view.s = 1; view.cx = 0.5; view.cy = 0.5; draw(); }
        else zoomAt(what === "in" ? 1.5 : 1 / 1.5, W / 2, H / 2);
      });
    });
    window.addEventListener("resize", resize);
    window.addEventListener("hashchange", fromHash);
    if (window.matchMedia) {
      var mq = window.matchMedia("(prefers-color-scheme: dark)");
      if (mq.addEventListener) mq.addEventListener("change", draw);
    }
    resize();
    fromHash();
  }
})();
