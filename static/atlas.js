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

  /* ---- the layer page's unit grids (cards.js -> window.ATLAS_CARDS; atlasgen/site/grid.py).
   * Only the cards in view are in the DOM: the grid's padding stands for the rows above and below,
   * so the page scrolls as if every card were there. Sorting and filtering work on index arrays. */
  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function VirtualGrid(grid, data, tools) {
    var n = data.n, cols = data.columns, self = this;
    var pixelated = grid.getAttribute("data-px") === "1";
    var flagCols = data.flags.map(function (f) { return cols[f.key]; });
    var hay = null, sorted = null, shown = null, sortKey = "id", query = "", flag = "";
    var metrics = null, drawn = [-1, -1], pending = false;
    var status = tools ? tools.querySelector(".grid-status") : null;
    var BUFFER_ROWS = 4;

    function card(i) {
      var flags = "", badges = [], k;
      for (k = 0; k < data.flags.length; k++) {
        if (flagCols[k][i]) {
          flags += " flag-" + data.flags[k].key;
          if (data.flags[k].badge) badges.push(esc(data.flags[k].title));
        }
      }
      var dead = cols.dead && cols.dead[i];
      var html = '<li class="card' + (dead ? " dead" : "") + flags + '" data-id="' + i + '"><a href="' +
        esc(data.href.replace("{id}", i)) + '">';
      if (cols.thumb[i]) {
        html += '<img class="thumb' + (pixelated ? " px" : "") + '" src="' + esc(data.thumb.replace("{id}", i).replace("{file}", data.thumbs[cols.thumb[i] - 1])) +
          '" alt="' + data.kind_name + " " + i + " visualisation" + (flags.indexOf(" flag-vis_failed") >= 0 ? " (failed)" : "") +
          '" width="120" height="120">';
      } else {
        html += '<span class="thumb none" role="img" aria-label="no visualisation">no vis</span>';
      }
      html += '<span class="card-text"><span class="card-id">' + data.kind + "/" + i + "</span>";
      if (cols.label[i]) html += '<span class="card-label">' + esc(cols.label[i]) + "</span>";
      else if (cols.top[i]) html += '<span class="card-label muted">' + esc(cols.top[i]) + "</span>";
      else html += '<span class="card-label"></span>';
      var meta = dead ? "never fires" : esc(cols.meta[i]);
      for (k = 0; k < data.shown.length; k++) {
        var v = cols[data.shown[k].key][i];
        if (v !== null && v !== undefined && v !== "") meta += " · " + esc(data.shown[k].title) + " " + esc(v);
      }
      html += '<span class="card-meta">' + meta + "</span>";
      if (badges.length) html += '<span class="card-flags">' + badges.join(", ") + "</span>";  // as cards.py writes them
      return html + "</span></a></li>";
    }

    function order(key) {
      var ids = new Array(n), i;
      for (i = 0; i < n; i++) ids[i] = i;
      if (key === "id") return ids;
      var spec = data.sorts.filter(function (s) { return s.key === key; })[0];
      var col = cols[key], sign = spec && spec.order === "asc" ? 1 : -1;
      ids.sort(function (a, b) {
        var x = col[a], y = col[b];
        if (x === null || x === undefined) return (y === null || y === undefined) ? a - b : 1; // missing last
        if (y === null || y === undefined) return -1;
        return (sign * (x - y)) || (a - b);
      });
      return ids;
    }
    function matches(i, words, flagCol, want) {
      if (flagCol && !flagCol[i] !== !want) return false;
      for (var w = 0; w < words.length; w++) if (hay[i].indexOf(words[w]) < 0) return false;
      return true;
    }
    function select() {
      var words = query.toLowerCase().split(/\s+/).filter(Boolean);
      var flagCol = flag ? cols[flag.slice(1)] : null, want = flag.charAt(0) === "+";
      if (!words.length && !flagCol) { shown = sorted; return; }
      if (words.length && !hay) {
        hay = new Array(n);
        for (var i = 0; i < n; i++) {
          var h = data.kind + "/" + i + " " + i;
          for (var s = 0; s < data.search.length; s++) h += " " + (cols[data.search[s]][i] || "");
          hay[i] = h.toLowerCase();
        }
      }
      shown = sorted.filter(function (i) { return matches(i, words, flagCol, want); });
    }
    function measure() {
      var style = window.getComputedStyle(grid);
      var tracks = style.gridTemplateColumns.split(" ").filter(Boolean).length || 1;
      var gap = parseFloat(style.rowGap) || 0;
      var first = grid.firstElementChild;
      var height = first ? first.getBoundingClientRect().height : 0;
      if (!height) return null;
      return { cols: tracks, row: height + gap };
    }
    function draw(force) {
      pending = false;
      if (!metrics) {
        grid.style.paddingTop = grid.style.paddingBottom = "";
        grid.innerHTML = shown.length ? card(shown[0]) : "";
        metrics = measure();
        drawn = [-1, -1];
        if (!metrics) return;
      }
      var rows = Math.ceil(shown.length / metrics.cols);
      var top = grid.getBoundingClientRect().top, view = window.innerHeight || 800;
      var screenRows = Math.ceil(view / metrics.row);
      var a = Math.max(0, Math.min(rows, Math.floor(-top / metrics.row) - BUFFER_ROWS));
      var b = Math.max(Math.min(rows, a + screenRows + 2 * BUFFER_ROWS),
                       Math.min(rows, Math.ceil((view - top) / metrics.row) + BUFFER_ROWS));
      if (!force && a === drawn[0] && b === drawn[1]) return;
      drawn = [a, b];
      var html = "", end = Math.min(shown.length, b * metrics.cols);
      for (var k = a * metrics.cols; k < end; k++) html += card(shown[k]);
      grid.style.paddingTop = (a * metrics.row) + "px";
      grid.style.paddingBottom = (Math.max(0, rows - b) * metrics.row) + "px";
      grid.innerHTML = html;
    }
    function schedule() {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(function () { draw(false); });
    }
    function report() {
      if (!status) return;
      var total = n.toLocaleString("en");
      status.textContent = shown.length === n ? total + " " + data.kind_name + "s" :
        shown.length.toLocaleString("en") + " of " + total + " " + data.kind_name + "s";
    }
    this.sort = function (key) { sortKey = key; sorted = order(key); select(); report(); draw(true); };
    this.filter = function (text, flagValue) {
      query = text || ""; flag = flagValue || ""; select(); report(); draw(true);
    };
    this.ids = function () { return shown.slice(); };
    sorted = order(sortKey);
    shown = sorted;
    draw(true);
    report();
    window.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", function () { metrics = null; draw(true); });
    grid.setAttribute("data-virtual", "1");
    if (tools) {
      var buttons = tools.querySelectorAll("button[data-sort]");
      Array.prototype.forEach.call(buttons, function (b) {
        b.addEventListener("click", function () {
          self.sort(b.getAttribute("data-sort"));
          Array.prototype.forEach.call(buttons, function (o) { o.setAttribute("aria-pressed", o === b ? "true" : "false"); });
        });
      });
      var input = tools.querySelector("[data-grid-filter]"), menu = tools.querySelector("[data-grid-flag]");
      var refilter = function () { self.filter(input ? input.value.trim() : "", menu ? menu.value : ""); };
      if (input) input.addEventListener("input", refilter);
      if (menu) menu.addEventListener("change", refilter);
      if ((input && input.value) || (menu && menu.value)) refilter();
      tools.hidden = false;
    }
  }
  window.atlasGrids = {};
  if (window.ATLAS_CARDS) {
    Array.prototype.forEach.call(document.querySelectorAll("ol[data-cards]"), function (grid) {
      var name = grid.getAttribute("data-cards"), data = window.ATLAS_CARDS.grids[name];
      if (!data) return;
      var tools = document.querySelector('[data-grid-tools="' + name + '"]');
      window.atlasGrids[name] = new VirtualGrid(grid, data, tools);
    });
  }

  /* ---- search over the prebuilt index (search_index.js -> window.ATLAS_SEARCH) */
  var searchInput = document.querySelector("[data-search]");
  if (searchInput && window.ATLAS_SEARCH) {
    var index = window.ATLAS_SEARCH;
    var results = document.getElementById("search-results");
    var status = document.getElementById("search-status");
    var MAX_RESULTS = 50;
    var features = index.features.map(function (f) {
      // [href, layer, id, label, classes, flags, density (as the pages print it)]
      return { href: f[0], code: f[1] + "/f/" + f[2], id: String(f[2]), label: f[3], classes: f[4], flags: f[5] || "",
               density: f[6], hay: (f[3] + " " + f[4]).toLowerCase() };
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
          if (r.item.density) a.appendChild(el("span", "r-extra r-density",
            r.item.density === "0%" ? "never fires" : "fires on " + r.item.density + " of images"));
          if (r.item.flags) a.appendChild(el("span", "r-flags", r.item.flags));
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

  /* ---- the feature map lives in static/map.js */

  /* ---- each example's arg-max crop, a small zoom on where the unit fires most, drawn beside the image
   * (never over it) from the example's own image and the position in data-crop (the size, 250 %, is in
   * atlas.css). Decorative: without JavaScript the example, its heat-map and its numbers are all still there. */
  Array.prototype.forEach.call(document.querySelectorAll(".ex-img[data-crop]"), function (box) {
    var img = box.querySelector("img");
    var figure = box.parentNode;
    if (!img || !figure || !box.getAttribute("data-crop")) return;  // no spatial map: no crop
    var crop = el("i", "ex-crop");
    crop.style.backgroundImage = "url(" + JSON.stringify(img.src) + ")";
    crop.style.backgroundPosition = box.getAttribute("data-crop");
    figure.insertBefore(crop, box.nextSibling);
    figure.classList.add("has-crop");
    var list = figure.closest(".examples");
    if (list) list.classList.add("crops");
  });
})();
