/* The try page: the reader's image through the model and an SAE, in the browser (atlasgen.site.trypage).
   Classic script, no fetch, no modules by URL, no workers: it works from file:// and over HTTP alike.
   The runtime's loader is imported from a blob: URL and its .wasm handed over as bytes. */
(function () {
  "use strict";
  var C = window.ATLAS_TRY;
  if (!C) return;
  var me = document.querySelector('script[src$="static/try.js"]');
  var root = me.getAttribute("src").replace(/static\/try\.js$/, "");
  var $ = function (id) { return document.getElementById(id); };
  var status = $("try-status");
  var t0 = performance.now();
  var timing = { start: 0 };
  var pixels = null;
  var last = null; // the latest result: { layer, units, out }

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }

  function loadScript(url) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.async = false; // injected scripts download side by side and run in the order injected
      s.src = url;
      s.onload = function () { resolve(); };
      s.onerror = function () { reject(new Error("could not load " + url)); };
      document.head.appendChild(s);
    });
  }

  function base64Bytes(text) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text); // native (Chromium 140+, Firefox 133+)
    var bin = atob(text), n = bin.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  var runtimeReady = null;
  function runtime() {
    if (runtimeReady) return runtimeReady;
    runtimeReady = Promise.all(C.runtime.map(function (f) { return loadScript(root + f); })).then(function () {
      timing.scripts = performance.now() - t0;
      // the .wasm ships gzipped (a quarter of the script to parse); the browser inflates it natively
      var gz = new Blob([base64Bytes(window.ATLAS_ORT_WASM_GZ)]);
      window.ATLAS_ORT_WASM_GZ = null;
      return new Response(gz.stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
    }).then(function (wasm) {
      var ort = window.ort;
      ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which file:// and most hosts lack
      ort.env.wasm.proxy = false; // a proxy worker would be started from a file URL
      ort.env.wasm.wasmBinary = new Uint8Array(wasm);
      var glue = new Blob([window.ATLAS_ORT_GLUE], { type: "text/javascript" });
      ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(glue) };
      timing.runtime = performance.now() - t0;
    });
    return runtimeReady;
  }

  var layerData = {};
  function loadLayer(layer) {
    if (layerData[layer]) return layerData[layer];
    var files = C.files[layer];
    layerData[layer] = Promise.all([runtime(), loadScript(root + files.graph), loadScript(root + files.units)])
      .then(function () {
        var bytes = base64Bytes(window.ATLAS_TRY_GRAPHS[layer]);
        window.ATLAS_TRY_GRAPHS[layer] = null;
        return window.ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
      })
      .then(function (s) {
        timing.session = performance.now() - t0;
        return { session: s, units: window.ATLAS_TRY_UNITS[layer] };
      });
    return layerData[layer];
  }

  /* ---- the dataset's resize and centre crop (atlasgen.data.resize_center_crop), exactly:
     PIL's bicubic resampling (Resample.c: a = -0.5, support 2 x the scale, 22-bit fixed-point
     coefficients, a horizontal then a vertical pass, each rounded to 8 bits) and Python's round. */
  var PRECISION = 22, ONE = 1 << PRECISION, HALF = 1 << (PRECISION - 1);
  function bicubic(x) {
    var a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  }
  function coefficients(inSize, outSize) {
    var scale = inSize / outSize, filterscale = Math.max(scale, 1), support = 2 * filterscale;
    var ksize = Math.ceil(support) * 2 + 1, bounds = new Int32Array(outSize * 2), kk = new Float64Array(outSize * ksize);
    for (var xx = 0; xx < outSize; xx++) {
      var center = (xx + 0.5) * scale, ww = 0, ss = 1 / filterscale;
      var xmin = Math.trunc(center - support + 0.5);
      if (xmin < 0) xmin = 0;
      var xmax = Math.trunc(center + support + 0.5);
      if (xmax > inSize) xmax = inSize;
      xmax -= xmin;
      var k = new Float64Array(xmax);
      for (var x = 0; x < xmax; x++) { k[x] = bicubic((x + xmin - center + 0.5) * ss); ww += k[x]; }
      for (x = 0; x < xmax; x++) {
        var v = ww !== 0 ? k[x] / ww : k[x];
        kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
      }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    return { ksize: ksize, bounds: bounds, kk: kk };
  }
  function clip8(v) { return v >= ONE * 256 ? 255 : v <= 0 ? 0 : Math.floor(v / ONE); }
  // rgb: Uint8Array (h, w, 3) -> (outH, outW, 3)
  function resample(rgb, w, h, outW, outH) {
    var tmp = rgb, tw = w;
    if (outW !== w) {
      var c = coefficients(w, outW);
      tmp = new Uint8Array(outW * h * 3);
      for (var y = 0; y < h; y++) {
        for (var xx = 0; xx < outW; xx++) {
          var xmin = c.bounds[xx * 2], n = c.bounds[xx * 2 + 1], o = xx * c.ksize;
          var s0 = HALF, s1 = HALF, s2 = HALF;
          for (var x = 0; x < n; x++) {
            var p = (y * w + x + xmin) * 3, kx = c.kk[o + x];
            s0 += rgb[p] * kx; s1 += rgb[p + 1] * kx; s2 += rgb[p + 2] * kx;
          }
          var q = (y * outW + xx) * 3;
          tmp[q] = clip8(s0); tmp[q + 1] = clip8(s1); tmp[q + 2] = clip8(s2);
        }
      }
      tw = outW;
    }
    if (outH === h) return tmp;
    var cv = coefficients(h, outH), out = new Uint8Array(tw * outH * 3);
    for (var yy = 0; yy < outH; yy++) {
      var ymin = cv.bounds[yy * 2], m = cv.bounds[yy * 2 + 1], ov = yy * cv.ksize;
      for (var xx2 = 0; xx2 < tw; xx2++) {
        var t0_ = HALF, t1 = HALF, t2 = HALF;
        for (var j = 0; j < m; j++) {
          var pp = ((j + ymin) * tw + xx2) * 3, ky = cv.kk[ov + j];
          t0_ += tmp[pp] * ky; t1 += tmp[pp + 1] * ky; t2 += tmp[pp + 2] * ky;
        }
        var qq = (yy * tw + xx2) * 3;
        out[qq] = clip8(t0_); out[qq + 1] = clip8(t1); out[qq + 2] = clip8(t2);
      }
    }
    return out;
  }
  function roundHalfEven(x) {
    var f = Math.floor(x), d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }
  function resizeCenterCrop(rgb, w, h, size, crop) {
    var scale = size / crop / Math.min(w, h);
    var nw = Math.max(size, roundHalfEven(w * scale)), nh = Math.max(size, roundHalfEven(h * scale));
    var img = nw === w && nh === h ? rgb : resample(rgb, w, h, nw, nh);
    var left = Math.floor((nw - size) / 2), top = Math.floor((nh - size) / 2), out = new Uint8Array(size * size * 3);
    for (var y = 0; y < size; y++) {
      out.set(img.subarray(((y + top) * nw + left) * 3, ((y + top) * nw + left + size) * 3), y * size * 3);
    }
    return out;
  }

  /* ---- decoding: as atlasgen.data.load_rgb (EXIF orientation applied, no colour management,
     transparency over white) */
  function decode(source) {
    return createImageBitmap(source, { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image" })
      .then(function (bmp) {
        var c = document.createElement("canvas");
        c.width = bmp.width; c.height = bmp.height;
        var g = c.getContext("2d", { willReadFrequently: true });
        g.drawImage(bmp, 0, 0);
        var d = g.getImageData(0, 0, bmp.width, bmp.height).data, n = bmp.width * bmp.height, rgb = new Uint8Array(n * 3);
        for (var i = 0; i < n; i++) {
          var a = d[i * 4 + 3];
          for (var ch = 0; ch < 3; ch++) {
            var v = d[i * 4 + ch];
            rgb[i * 3 + ch] = a === 255 ? v : Math.round((v * a + 255 * (255 - a)) / 255);
          }
        }
        return { rgb: rgb, w: bmp.width, h: bmp.height };
      });
  }

  function toTensor(rgb, size) {
    var plane = size * size, x = new Float32Array(3 * plane);
    for (var i = 0; i < plane; i++) {
      x[i] = rgb[i * 3] / 255; x[plane + i] = rgb[i * 3 + 1] / 255; x[2 * plane + i] = rgb[i * 3 + 2] / 255;
    }
    return x;
  }

  function drawInput(rgb, size) {
    var c = $("try-canvas"), g = c.getContext("2d"), im = g.createImageData(size, size);
    for (var i = 0; i < size * size; i++) {
      im.data[i * 4] = rgb[i * 3]; im.data[i * 4 + 1] = rgb[i * 3 + 1]; im.data[i * 4 + 2] = rgb[i * 3 + 2]; im.data[i * 4 + 3] = 255;
    }
    g.putImageData(im, 0, 0);
  }

  /* ---- results */
  function pinned() {
    var h = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var p = kv.split("="); if (p.length === 2) h[p[0]] = decodeURIComponent(p[1]);
    });
    return h;
  }
  function unitHref(layer, kind, id) {
    return root + C.unit_url.replace("LAYER", layer).replace("KIND", kind).replace("ID", String(id));
  }
  function fmt(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toPrecision(3) : v.toPrecision(2);
  }
  function bandName(rel, edges) {
    if (!(rel > 0)) return "does not fire";
    if (!edges.length) return "";
    if (rel > edges[0]) return "above the dataset's maximum";
    for (var b = 0; b + 1 < edges.length; b++) {
      if (rel > edges[b + 1]) return Math.round(edges[b + 1] * 100) + "\u2013" + Math.round(edges[b] * 100) + " % of max";
    }
    return "below " + Math.round(edges[edges.length - 1] * 100) + " % of max";
  }
  function ranked(values, top) {
    var ids = [];
    for (var i = 0; i < values.length; i++) if (values[i] > 0) ids.push(i);
    ids.sort(function (a, b) { return values[b] - values[a] || a - b; });
    return ids.slice(0, top);
  }

  function drawHeat(map, grid, id, scale) {
    var c = $("try-heat"), g = c.getContext("2d"), H = grid[0], W = grid[1];
    g.clearRect(0, 0, c.width, c.height);
    if (map === null) return;
    var small = document.createElement("canvas"); small.width = W; small.height = H;
    var sg = small.getContext("2d"), im = sg.createImageData(W, H), P = C.palette, n = P.length - 1;
    for (var p = 0; p < H * W; p++) {
      var v = scale > 0 ? Math.min(1, Math.max(0, map[id * H * W + p] / scale)) : 0, col = P[Math.round(v * n)];
      im.data[p * 4] = col[0]; im.data[p * 4 + 1] = col[1]; im.data[p * 4 + 2] = col[2]; im.data[p * 4 + 3] = col[3];
    }
    sg.putImageData(im, 0, 0);
    g.imageSmoothingEnabled = false;
    g.drawImage(small, 0, 0, c.width, c.height);
  }

  function unitRow(r, kind, id, units, out, layer) {
    var fam = kind === "f" ? units.features : units.neurons;
    var v = out[kind === "f" ? "feature_max" : "neuron_max"][id], max = fam.max[id], rel = max > 0 ? v / max : 0;
    var li = document.createElement("li");
    li.className = "try-unit";
    li.tabIndex = 0;
    li.dataset.unit = kind + "/" + id;
    li.dataset.value = String(v);
    var thumb = fam.thumb[id]
      ? '<img src="' + root + fam.thumb[id] + '" alt="" width="48" height="48" loading="lazy">'
      : '<span class="try-nothumb"></span>';
    var label = fam.label[id] ? '<span class="try-label">' + escapeHtml(fam.label[id]) + "</span>" : "";
    li.innerHTML = thumb +
      '<div class="try-unit-body"><a href="' + unitHref(layer, kind, id) + '">' + kind + "/" + id + "</a> " + label +
      '<div class="try-bar" title="' + Math.round(rel * 100) + ' % of the dataset maximum"><span style="width:' +
      Math.min(100, rel * 100).toFixed(1) + '%"></span></div>' +
      '<span class="try-num">' + fmt(v) + " \u00b7 " + Math.round(rel * 100) + " % of max " + fmt(max) +
      ' \u00b7 <span class="try-band">' + bandName(rel, units.bands) + "</span></span></div>";
    var show = function () {
      drawHeat(out[kind === "f" ? "feature_map" : "neuron_map"], units.grid, id, max);
      $("try-caption").textContent = "Heat-map of " + kind + "/" + id + ", relative to its dataset maximum (" + fmt(max) + ").";
    };
    li.addEventListener("mouseenter", show);
    li.addEventListener("focus", show);
    r.appendChild(li);
    return show;
  }
  function escapeHtml(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }

  function show(layer, units, out) {
    var lists = { f: $("try-features"), n: $("try-neurons") }, result = { layer: layer, features: [], neurons: [] };
    var first = null;
    ["f", "n"].forEach(function (kind) {
      var values = out[kind === "f" ? "feature_max" : "neuron_max"], list = lists[kind];
      list.textContent = "";
      var ids = ranked(values, C.top);
      ids.forEach(function (id) {
        var s = unitRow(list, kind, id, units, out, layer);
        first = first || s;
        result[kind === "f" ? "features" : "neurons"].push({ id: id, value: values[id] });
      });
      if (!ids.length) list.innerHTML = '<li class="muted">None fires on this image.</li>';
    });
    var pin = pinned(), pl = $("try-pinned-list");
    pl.textContent = "";
    var pinKind = pin.f !== undefined ? "f" : pin.n !== undefined ? "n" : null;
    if (pinKind && (!pin.layer || pin.layer === layer)) {
      var pid = parseInt(pin[pinKind], 10), count = (pinKind === "f" ? units.features : units.neurons).max.length;
      if (pid >= 0 && pid < count) {
        first = unitRow(pl, pinKind, pid, units, out, layer);
        $("try-pinned").hidden = false;
      }
    } else {
      $("try-pinned").hidden = true;
    }
    if (C.logits && out.logits) {
      var z = out.logits, mx = -Infinity, sum = 0, p = [];
      for (var k = 0; k < z.length; k++) mx = Math.max(mx, z[k]);
      for (k = 0; k < z.length; k++) { p.push(Math.exp(z[k] - mx)); sum += p[k]; }
      var order = p.map(function (_, i) { return i; }).sort(function (a, b) { return p[b] - p[a] || a - b; });
      var preds = $("try-preds");
      preds.textContent = "";
      result.predictions = [];
      order.slice(0, C.predictions).forEach(function (c) {
        var li = document.createElement("li"), cls = C.classes[c];
        li.innerHTML = '<a href="' + root + cls.href + '">' + escapeHtml(cls.name) + '</a> <span class="try-num">' +
          (100 * p[c] / sum).toFixed(1) + " %</span>";
        preds.appendChild(li);
        result.predictions.push({ class: c, p: p[c] / sum });
      });
    }
    if (first) first(); else drawHeat(null);
    return result;
  }

  function run() {
    if (!pixels) return Promise.resolve();
    var layer = $("try-layer").value;
    say("Running " + layer + "\u2026");
    var started = performance.now();
    return loadLayer(layer).then(function (L) {
      var tensor = new window.ort.Tensor("float32", toTensor(pixels, C.image_size), [1, 3, C.image_size, C.image_size]);
      return L.session.run({ image: tensor }).then(function (res) {
        var out = {};
        Object.keys(res).forEach(function (k) { out[k] = res[k].data; });
        var r = show(layer, L.units, out);
        last = { layer: layer, units: L.units, out: out };
        gameOffer(layer);
        r.ms = performance.now() - started;
        if (timing.first === undefined) timing.first = performance.now() - t0;
        r.timing = timing;
        window.ATLAS_TRY_RESULT = r;
        $("try-result").hidden = false;
        say("Ran " + layer + " in " + Math.round(r.ms) + " ms on this device (" + L.units.dtype + " weights; " +
          "within " + L.units.tolerance + " of PyTorch at the top units in the build's check).");
      });
    }).catch(function (e) {
      say("Could not run the model: " + (e && e.message ? e.message : e), true);
      window.ATLAS_TRY_ERROR = String(e && e.message ? e.message : e);
    });
  }

  function useSource(source, name) {
    say("Reading " + name + "\u2026");
    return decode(source).then(function (im) {
      pixels = resizeCenterCrop(im.rgb, im.w, im.h, C.image_size, C.crop_fraction);
      drawInput(pixels, C.image_size);
      $("try-caption").textContent = name + " (" + im.w + "\u00d7" + im.h + " px), as the model sees it.";
      $("try-caption").dataset.name = name;
      return run();
    }).catch(function (e) {
      var msg = e && e.name === "SecurityError"
        ? "This browser does not let a page opened from disk read an image it did not pick: choose the file with the button instead."
        : "Could not read " + name + ": " + (e && e.message ? e.message : e);
      say(msg, true);
      window.ATLAS_TRY_ERROR = msg;
    });
  }

  $("try-file").addEventListener("change", function (e) {
    var f = e.target.files && e.target.files[0];
    if (f) useSource(f, f.name);
  });
  var drop = $("try-drop");
  ["dragenter", "dragover"].forEach(function (t) {
    document.addEventListener(t, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    document.addEventListener(t, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  document.addEventListener("drop", function (e) {
    var f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) useSource(f, f.name);
  });
  $("try-layer").addEventListener("change", function () { run(); });
  window.addEventListener("hashchange", function () { if (pixels) run(); });

  /* A dataset image handed over by a unit page's "try this image" (#...&img=images/<name>.webp). Over
     HTTP the page reads the site's file; from file:// a canvas that draws another file's image is
     tainted, so the page reads the same bytes from <model>/try/images/<name>.js, a data: URL, whose
     image is not. Read while the model loads: run() waits for both. */
  function datasetImage(name) {
    var local = location.protocol === "file:";
    if (local && !C.dataset_images) {
      return Promise.reject(new Error("This browser does not let a page opened from disk read " + name +
        ", and this site was built without the copies it can read (site.try_dataset_images): choose the file with the button, or open the site over HTTP."));
    }
    var source = local
      ? loadScript(root + C.dataset_images + name.replace(/\.[a-z]+$/, ".js")).then(function () {
        var url = (window.ATLAS_TRY_IMAGES || {})[name];
        if (!url) throw new Error("no copy of " + name);
        return url;
      })
      : Promise.resolve(root + name);
    return source.then(function (url) {
      return new Promise(function (resolve, reject) {
        var img = new Image();
        img.onload = function () { resolve(img); };
        img.onerror = function () { reject(new Error("could not load " + name)); };
        img.src = url;
      });
    });
  }

  /* ---- the guess-the-image game with the reader's images: the image (as the model sees it) and its
     most active features, ranked as the game's rounds are (activation relative to the feature's
     dataset maximum, ties by id), kept in localStorage for the layer's game page (static/game.js). */
  var GAME_KEY = "atlasgen-try-images:" + C.model, GAME_MAX = 8;
  function gameImages() {
    try { var v = JSON.parse(window.localStorage.getItem(GAME_KEY) || "[]"); return Array.isArray(v) ? v : []; } catch (e) { return []; }
  }
  function gameCount(layer) {
    return gameImages().filter(function (e) { return e.layer === layer; }).length;
  }
  function gameOffer(layer) {
    var g = C.game[layer], box = $("try-game");
    if (!box) return;
    box.hidden = !g;
    if (!g) return;
    $("try-game-link").href = root + g.href;
    var n = gameCount(layer);
    $("try-game-status").textContent = n ? n + " image" + (n === 1 ? "" : "s") + " of yours in the " + layer + " game." : "";
    $("try-game-add").disabled = false;
  }
  function gameFeatures(units, out, n) {
    var v = out.feature_max, max = units.features.max, rel = [];
    for (var i = 0; i < v.length; i++) rel.push(max[i] > 0 ? v[i] / max[i] : 0);
    var ids = [];
    for (i = 0; i < rel.length; i++) if (rel[i] > 0) ids.push(i);
    ids.sort(function (a, b) { return rel[b] - rel[a] || a - b; });
    return ids.slice(0, n).map(function (id) {
      return { id: id, rel: Math.round(rel[id] * 1000) / 1000, label: units.features.label[id] || "", thumb: units.features.thumb[id] || null };
    });
  }
  if ($("try-game-add")) $("try-game-add").addEventListener("click", function () {
    if (!last || !C.game[last.layer]) return;
    var entry = {
      layer: last.layer,
      name: $("try-caption").dataset.name || "your image",
      image: $("try-canvas").toDataURL("image/png"),
      features: gameFeatures(last.units, last.out, C.game[last.layer].features),
    };
    var all = gameImages().filter(function (e) { return !(e.layer === entry.layer && e.image === entry.image); });
    all.push(entry);
    var mine = all.filter(function (e) { return e.layer === entry.layer; });
    if (mine.length > GAME_MAX) all.splice(all.indexOf(mine[0]), 1); // the oldest goes
    try {
      window.localStorage.setItem(GAME_KEY, JSON.stringify(all));
      gameOffer(entry.layer);
      $("try-game-add").disabled = true;
    } catch (e) {
      $("try-game-status").textContent = "This browser would not store the image (" + (e && e.name) + ").";
    }
  });

  var pin = pinned();
  if (pin.layer && C.files[pin.layer] && $("try-layer").tagName === "SELECT") $("try-layer").value = pin.layer;
  loadLayer($("try-layer").value).then(function (L) {
    var mb = (C.files[$("try-layer").value].bytes / 1e6).toFixed(1);
    $("try-about").textContent = "Model loaded in " + (timing.session / 1000).toFixed(1) + " s (" + mb + " MB graph, " +
      L.units.dtype + " weights, ONNX Runtime Web " + window.ort.env.versions.web + ", one thread).";
    if (!pixels) say("Ready: choose an image.");
  }, function (e) {
    say("Could not load the model: " + (e && e.message ? e.message : e), true);
    window.ATLAS_TRY_ERROR = String(e && e.message ? e.message : e);
  });
  if (pin.img && /^images\/[A-Za-z0-9._-]+$/.test(pin.img)) {
    datasetImage(pin.img).then(function (img) {
      return useSource(img, "Dataset image " + pin.img).then(function () {
        $("try-caption").textContent = "Dataset image " + pin.img + ": the site's stored copy (" + img.naturalWidth + "\u00d7" +
          img.naturalHeight + " px WebP), as the model sees it. The atlas's scan read the original, so values may differ a little from the unit page's.";
      });
    }).catch(function (e) {
      var msg = e && e.message ? e.message : String(e);
      say(msg, true);
      window.ATLAS_TRY_ERROR = msg;
    });
  }
  window.ATLAS_TRY_PIPELINE = { resizeCenterCrop: resizeCenterCrop, decode: decode };
})();
