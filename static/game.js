/* "Guess the image" (after SAE Explorer). Data: window.ATLAS_GAME (game/rounds.js).
   One guess per round counts; the score is kept in localStorage. */
(function () {
  "use strict";
  var G = window.ATLAS_GAME;
  var root = document.getElementById("game");
  if (!G || !root || !G.rounds.length) return;
  var store = null;
  try { store = window.localStorage; } catch (e) { store = null; }
  var state = null;
  try { state = JSON.parse((store && store.getItem(G.key)) || "null"); } catch (e) { state = null; }
  state = state && typeof state === "object" ? state : {};
  state.guesses = state.guesses || {};
  function persist() { try { if (store) store.setItem(G.key, JSON.stringify(state)); } catch (e) { /* memory only */ } }
  var $ = function (id) { return document.getElementById(id); };
  var reader = null, readerScore = null; // a round with the reader's images, and its score (not stored)
  var pos = typeof state.pos === "number" && state.pos >= 0 && state.pos < G.rounds.length ? state.pos : 0;

  function score() {
    var right = 0, n = 0;
    for (var r in state.guesses) {
      if (!Object.prototype.hasOwnProperty.call(state.guesses, r) || !G.rounds[r]) continue;
      n += 1;
      if (state.guesses[r] === G.rounds[r].answer) right += 1;
    }
    return right + " / " + n;
  }
  function show() {
    if (reader) {
      $("round").textContent = "a round with your images";
      $("score").textContent = readerScore[0] + " / " + readerScore[1] + " (your images)";
      return draw(reader.round, reader.guess, function (k) {
        if (reader.guess !== undefined) return;
        reader.guess = k; readerScore[1] += 1; if (k === reader.round.answer) readerScore[0] += 1; show();
      });
    }
    $("round").textContent = "image " + (pos + 1) + " of " + G.rounds.length;
    $("score").textContent = score();
    draw(G.rounds[pos], state.guesses[pos], pick);
  }
  /* One round: R.features (id, href, thumb, label, rel), R.candidates (image URLs), R.answer. */
  function draw(R, guess, onPick) {
    var ol = $("g-features");
    ol.textContent = "";
    R.features.forEach(function (f) {
      var li = document.createElement("li"); li.className = "card";
      var a = document.createElement("a"); a.href = f.href;
      if (f.thumb) {
        var img = document.createElement("img"); img.className = "thumb" + (G.pixelated ? " px" : "");
        img.src = f.thumb; img.alt = ""; img.width = 120; img.height = 120;
        a.appendChild(img);
      }
      // The card's text as atlasgen/site/cards.py writes it: id, label, meta.
      var text = document.createElement("p");
      var id = document.createElement("b"); id.textContent = "f/" + f.id;
      var label = document.createElement("span"); label.textContent = f.label || "";
      var meta = document.createElement("small");
      meta.textContent = Math.round(f.rel * 100) + "% of its max";
      text.appendChild(id); text.appendChild(label); text.appendChild(meta);
      a.appendChild(text); li.appendChild(a); ol.appendChild(li);
    });
    var box = $("g-choices");
    box.textContent = "";
    R.candidates.forEach(function (src, k) {
      var b = document.createElement("button");
      b.type = "button"; b.className = "choice"; b.setAttribute("data-choice", String(k));
      var img = document.createElement("img"); img.src = src; img.alt = "candidate " + (k + 1);
      img.width = 140; img.height = 140; if (G.pixelated) img.className = "px";
      b.appendChild(img);
      if (guess !== undefined) {
        b.disabled = true;
        if (k === R.answer) b.classList.add("right");
        else if (k === guess) b.classList.add("wrong");
      }
      if (R.mine && R.mine[k]) b.setAttribute("data-reader", "1");
      b.addEventListener("click", function () { onPick(k); });
      box.appendChild(b);
    });
    $("verdict").textContent = guess === undefined ? (R.note || "") : (guess === R.answer ? "Right!" : "Not this one: the image outlined in green was the model's input.");
    $("g-prev").disabled = !reader && pos === 0;
    $("g-next").disabled = !reader && pos === G.rounds.length - 1;
  }
  function pick(k) {
    if (state.guesses[pos] !== undefined) return;
    state.guesses[pos] = k; persist(); show();
  }
  function go(p) { if (reader) { reader = null; } pos = Math.max(0, Math.min(G.rounds.length - 1, p)); state.pos = pos; persist(); show(); }
  $("g-prev").addEventListener("click", function () { go(reader ? pos : pos - 1); });
  $("g-next").addEventListener("click", function () { if (reader) readerRound(); else go(pos + 1); });
  $("g-reset").addEventListener("click", function () { state.guesses = {}; go(0); });

  /* ---- rounds with the reader's images (added on the try page, static/try.js: the image as the
     model saw it and its most active features, computed there in the browser). The features shown
     are those of one of the candidates: one of the reader's images or a held-out image of this
     game's rounds; the other candidates are the reader's other images and held-out images, in a
     random order. Their score is kept apart and not stored. */
  readerScore = [0, 0];
  function mine() {
    var all = [];
    try { all = JSON.parse((store && store.getItem("atlasgen-try-images:" + G.model)) || "[]"); } catch (e) { all = []; }
    return (Array.isArray(all) ? all : []).filter(function (e) { return e && e.layer === G.layer && e.image && e.features; });
  }
  function shuffled(a) {
    a = a.slice();
    for (var i = a.length - 1; i > 0; i--) { var j = Math.floor(Math.random() * (i + 1)), t = a[i]; a[i] = a[j]; a[j] = t; }
    return a;
  }
  function readerRound() {
    var imgs = mine();
    if (!imgs.length) return;
    var choices = G.rounds[0].candidates.length, order = shuffled(imgs.map(function (_, i) { return i; }));
    // The answer is one of the reader's images or, as often, a held-out image of this game's rounds:
    // "is it mine?" is part of the guess. The reader's images fill at most all but one place.
    var fromMine = Math.random() < 0.5, R0 = G.rounds[Math.floor(Math.random() * G.rounds.length)];
    var answer = fromMine ? { src: imgs[order[0]].image, mine: true } : { src: R0.candidates[R0.answer], mine: false };
    var cands = [answer];
    order.slice(fromMine ? 1 : 0).slice(0, choices - 2).forEach(function (i) { cands.push({ src: imgs[i].image, mine: true }); });
    var pool = [];
    G.rounds.forEach(function (r) { r.candidates.forEach(function (c) { if (c !== answer.src && pool.indexOf(c) < 0) pool.push(c); }); });
    shuffled(pool).slice(0, choices - cands.length).forEach(function (c) { cands.push({ src: c, mine: false }); });
    cands = shuffled(cands);
    var features = fromMine
      ? imgs[order[0]].features.map(function (f) {
        return { id: f.id, rel: f.rel, label: f.label, thumb: f.thumb ? G.root + f.thumb : null, href: G.unit_url.replace("ID", String(f.id)) };
      })
      : R0.features;
    var R = {
      features: features,
      candidates: cands.map(function (c) { return c.src; }),
      mine: cands.map(function (c) { return c.mine; }),
      answer: cands.indexOf(answer),
      note: "The features fired on one of these: one of your images or a held-out dataset image.",
    };
    reader = { round: R, guess: undefined };
    window.ATLAS_GAME_READER = { answer: R.answer, mine: fromMine, name: fromMine ? imgs[order[0]].name : null, features: features.map(function (f) { return f.id; }) };
    show();
  }
  function readerPanel() {
    if (!$("g-reader")) return;
    var n = mine().length;
    $("g-reader-count").textContent = n ? n + " image" + (n === 1 ? "" : "s") + " of yours." : "No image of yours yet.";
    $("g-reader-play").hidden = !n;
    $("g-reader-clear").hidden = !n;
  }
  if ($("g-reader")) {
    $("g-reader-play").addEventListener("click", readerRound);
    $("g-reader-clear").addEventListener("click", function () {
      try {
        var all = JSON.parse(store.getItem("atlasgen-try-images:" + G.model) || "[]").filter(function (e) { return e.layer !== G.layer; });
        store.setItem("atlasgen-try-images:" + G.model, JSON.stringify(all));
      } catch (e) { /* nothing stored */ }
      readerPanel();
      if (reader) go(pos);
    });
    readerPanel();
  }

  root.hidden = false;
  show();
})();
