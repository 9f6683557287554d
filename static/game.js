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
    var R = G.rounds[pos], guess = state.guesses[pos];
    $("round").textContent = "image " + (pos + 1) + " of " + G.rounds.length;
    $("score").textContent = score();
    var ol = $("g-features");
    ol.textContent = "";
    R.features.forEach(function (f) {
      var li = document.createElement("li"); li.className = "card";
      var a = document.createElement("a"); a.href = f.href;
      if (f.thumb) {
        var img = document.createElement("img"); img.className = "thumb" + (G.pixelated ? " px" : "");
        img.src = f.thumb; img.alt = "feature " + f.id + " visualisation"; img.width = 120; img.height = 120;
        a.appendChild(img);
      }
      var text = document.createElement("span"); text.className = "card-text";
      var id = document.createElement("span"); id.className = "card-id"; id.textContent = "f/" + f.id;
      var label = document.createElement("span"); label.className = "card-label"; label.textContent = f.label || "";
      var meta = document.createElement("span"); meta.className = "card-meta";
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
      b.addEventListener("click", function () { pick(k); });
      box.appendChild(b);
    });
    $("verdict").textContent = guess === undefined ? "" : (guess === R.answer ? "Right!" : "Not this one: the image outlined in green was the model's input.");
    $("g-prev").disabled = pos === 0;
    $("g-next").disabled = pos === G.rounds.length - 1;
  }
  function pick(k) {
    if (state.guesses[pos] !== undefined) return;
    state.guesses[pos] = k; persist(); show();
  }
  function go(p) { pos = Math.max(0, Math.min(G.rounds.length - 1, p)); state.pos = pos; persist(); show(); }
  $("g-prev").addEventListener("click", function () { go(pos - 1); });
  $("g-next").addEventListener("click", function () { go(pos + 1); });
  $("g-reset").addEventListener("click", function () { state.guesses = {}; go(0); });
  root.hidden = false;
  show();
})();
