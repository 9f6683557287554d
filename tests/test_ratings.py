"""The blind rating survey, import-ratings, rated I on the pages, and "guess the image".

Real files, a real tiny build, real Chromium (file:// URLs, as a reader who downloaded the atlas).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from atlasgen import ratings as R
from atlasgen.config import load_config
from atlasgen.pipeline import Pipeline
from atlasgen.progress import Console
from atlasgen.stages.game import choose_rounds

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM}"
)
SHA = "ab" * 32
EVIL = '<script>alert("x")</script> & "quoted"'


def rec(**kw) -> dict:
    base = {
        "rater": "r1",
        "rater_name": "",
        "model": "demonet",
        "layer": "mixed5b",
        "sae_sha256": SHA,
        "feature": 3,
        "q1": 5,
        "phrases": "dog",
        "q3": 5,
        "q4": 3,
        "q5": 1,
        "q6": 1,
        "answered": "2026-01-01T00:00:00Z",
    }
    base.update(kw)
    return base


def export_doc(ratings: list[dict], **kw) -> dict:
    doc = {
        "format": R.FORMAT,
        "version": R.VERSION,
        "model": "demonet",
        "layer": "mixed5b",
        "sae_sha256": SHA,
        "rater": "r1",
        "rater_name": "A",
        "ratings": ratings,
    }
    doc.update(kw)
    return doc


# ----------------------------------------------------------------------------- scoring and sampling


def test_score_is_terekhovs_formula():
    assert R.score(1, 1, 1) == 0.0
    assert R.score(5, 5, 5) == 1.0
    assert R.score(5, 5, 3) == pytest.approx(0.75)
    assert R.score(3, 5, 1) == pytest.approx(0.25)  # q1=.5, q3=1, q4=0
    assert R.score(1, 5, 5) == pytest.approx(0.5)  # an unclear visualisation earns only the coherence half


def test_survey_sample_groups_are_disjoint_equal_and_seeded():
    rank = np.arange(1, 101)  # feature i has rank i + 1: 0 is the most important
    eligible = np.ones(100, dtype=bool)
    eligible[[0, 50]] = False
    s = R.survey_sample(rank, eligible, ["top", "middle"], 10, seed=4)
    assert s == R.survey_sample(rank, eligible, ["top", "middle"], 10, seed=4)
    groups = {g: sorted(f for f, gg in s if gg == g) for g in ("top", "middle")}
    assert groups["top"] == list(range(1, 11))
    assert len(groups["middle"]) == 10 and 0 not in groups["middle"] and 50 not in groups["middle"]
    assert 40 <= min(groups["middle"]) and max(groups["middle"]) <= 60
    assert [g for _, g in s] != sorted(g for _, g in s)  # shuffled, not grouped
    small = R.survey_sample(rank[:7], np.ones(7, bool), ["top", "middle", "random"], 10, seed=0)
    assert len(small) == 6 and len({f for f, _ in small}) == 6
    for n_features in (17, 9, 4):  # fewer features than 2 x per_group: the groups shrink and stay disjoint
        for groups in (["top", "middle"], ["top", "middle", "bottom"], ["middle", "bottom"]):
            got = R.survey_sample(np.arange(n_features), np.ones(n_features, bool), groups, 20, seed=1)
            assert len({f for f, _ in got}) == len(got) > 0


def test_feature_importance_reads_the_importance_stage_or_falls_back_to_the_proxy():
    imp = {"features_topk": np.array([5, 9, 1]), "features_rank": np.array([2, 1, 3])}
    density, mean_act = np.array([0.5, 0.1, 0.0]), np.array([1.0, 4.0, 2.0])
    got = R.feature_importance(density, mean_act, None, imp)
    assert got["exact"] and got["rank"].tolist() == [2, 1, 3]
    weights = np.array([[3.0, 4.0], [1.0, 0.0], [9.0, 9.0]])  # norms 5, 1, 12.7
    proxy = R.feature_importance(density, mean_act, weights, None)
    assert not proxy["exact"] and "class weights" in proxy["source"]
    assert np.allclose(proxy["values"], [2.5, 0.4, 0.0]) and proxy["rank"].tolist() == [1, 2, 3]
    headless = R.feature_importance(density, mean_act, None, None)
    assert np.allclose(headless["values"], [0.5, 0.4, 0.0]) and "no class weights" in headless["source"]


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"format": "something", "version": 1}), '"format" is'),
        (json.dumps(export_doc([], version=9)), "version 9 is not supported"),
        (json.dumps(export_doc([])), "holds no ratings"),
        (
            json.dumps(export_doc([{"feature": 1, "q1": 6, "q3": 1, "q4": 1, "q5": 1, "q6": 1}])),
            "q1 must be an answer 1-5, got 6",
        ),
        (
            json.dumps(export_doc([{"feature": -2, "q1": 1, "q3": 1, "q4": 1, "q5": 1, "q6": 1}])),
            "feature must be a whole number",
        ),
        (
            json.dumps(export_doc([{"feature": 1, "q1": 5, "q3": 5, "q4": 5, "q5": 1, "q6": 1, "I": 0.2}])),
            "does not match",
        ),
        (
            json.dumps(
                export_doc(
                    [{"feature": 1, "q1": 5, "q3": 5, "q4": 5, "q5": 1, "q6": 1, "phrases": "x" * 600}]
                )
            ),
            "more than 500",
        ),
        (
            json.dumps(
                export_doc([{"feature": 1, "q1": 5, "q3": 5, "q4": 5, "q5": 1, "q6": 1}], layer="../etc")
            ),
            "layer '../etc' is not valid",
        ),
        (
            json.dumps(export_doc([{"feature": 1, "q1": 5, "q3": 5, "q4": 5, "q5": 1, "q6": 1}] * 2)),
            "rated twice",
        ),
    ],
)
def test_malformed_json_files_name_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(R.RatingsError) as exc:
        R.read_ratings_file(path)
    text = "\n".join(exc.value.errors)
    assert str(path) in text and message in text


def test_malformed_csv_files(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("rater,feature\nr1,2\n")
    with pytest.raises(R.RatingsError, match="lacks column"):
        R.read_ratings_file(path)
    path.write_text(",".join(R.CSV_COLUMNS) + "\nr1,,demonet,mixed5b," + SHA + ",4,5,dog,5,zero,1,1,,\n")
    with pytest.raises(R.RatingsError, match=r"line 2: q4 must be an answer 1-5"):
        R.read_ratings_file(path)
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(R.RatingsError, match="not UTF-8"):
        R.read_ratings_file(path)


def test_merge_keeps_one_answer_per_rater_and_the_later_wins():
    a = rec(answered="2026-01-01T00:00:00Z", q4=1)
    b = rec(answered="2026-02-01T00:00:00Z", q4=5)
    other = rec(rater="r2")
    records, counts = R.merge([a], [b, other])
    assert counts == {"added": 1, "replaced": 1, "kept": 0}
    assert [r["q4"] for r in records if r["rater"] == "r1"] == [5]
    records, counts = R.merge(records, [a])  # an older export never overwrites a newer answer
    assert counts["kept"] == 1 and [r["q4"] for r in records if r["rater"] == "r1"] == [5]


def test_import_writes_nothing_when_any_file_is_bad(tmp_path):
    config = tmp_path / "site_config.yaml"
    config.write_text(yaml.safe_dump({"layers": [{"name": "mixed5b"}]}))
    cfg = load_config(config)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(export_doc([{"feature": 1, "q1": 5, "q3": 5, "q4": 5, "q5": 1, "q6": 1}])))
    first = R.import_files(cfg, [good])
    assert first["added"] == 1
    before = R.merged_path(cfg).read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(export_doc([{"feature": 2, "q1": 9, "q3": 5, "q4": 5, "q5": 1, "q6": 1}], rater="r2"))
    )
    other_model = tmp_path / "other.json"
    other_model.write_text(
        json.dumps(export_doc([{"feature": 2, "q1": 1, "q3": 5, "q4": 5, "q5": 1, "q6": 1}], model="resnet"))
    )
    with pytest.raises(R.RatingsError) as exc:
        R.import_files(cfg, [good, bad, other_model])
    text = "\n".join(exc.value.errors)
    assert "bad.json" in text and "q1 must be an answer 1-5, got 9" in text
    assert "other.json" in text and "this config builds 'demonet'" in text
    assert R.merged_path(cfg).read_bytes() == before
    assert len(list((R.ratings_dir(cfg) / "imported").iterdir())) == 1


def test_choose_rounds_has_one_right_answer_from_other_classes():
    labels = np.repeat(np.arange(6), 5)
    heldout = np.arange(30)
    images, cand, answer = choose_rounds(heldout, labels, 8, 4, seed=1)
    again = choose_rounds(heldout, labels, 8, 4, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip((images, cand, answer), again))
    for r in range(8):
        assert cand[r, answer[r]] == images[r]
        assert len(set(labels[cand[r]].tolist())) == 4  # four different classes
    assert len(set(answer.tolist())) > 1  # the right answer is not always in the same place


# ----------------------------------------------------------------------------- the whole loop, in a browser


def _rebuild(config: Path):
    return Pipeline(load_config(config), console=Console(0)).build()


def _set(config: Path, section: str, **values):
    data = yaml.safe_load(config.read_text())
    data.setdefault(section, {}).update(values)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def _cli(*args, cwd):
    import os

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run(
        [sys.executable, "-m", "atlasgen", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _page(browser):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return context, page, errors


def _answer(page, name: str, value: int):
    page.check(f'input[name="{name}"][value="{value}"]')


@needs_chromium
def test_survey_export_import_shows_ratings(tiny_copy, browser):
    folder, config, site = tiny_copy
    _set(config, "ratings", per_group=3)
    assert _rebuild(config).ran == ["survey", "site"]  # survey settings: a new sample, the site re-rendered
    rate = site / "demonet" / "mixed5b" / "rate" / "index.html"
    survey = json.loads(
        re.search(r"= (.*);\n$", (site / "demonet/mixed5b/rate/survey.js").read_text()).group(1)
    )
    ids = [it["id"] for it in survey["items"]]
    assert len(ids) == 6 and "group" not in json.dumps(survey)  # blind: no group in the page's data

    context, page, errors = _page(browser)
    page.goto(rate.as_uri())
    page.fill("#rater-name", "Ada")
    for n in range(len(ids)):
        assert page.is_hidden("#examples-box")  # examples stay hidden until Q1/Q2 are answered
        page.click("#reveal")
        assert page.is_visible("#form-error")  # Q1 is required
        _answer(page, "q1", 5)
        page.fill("#q2", EVIL if n == 0 else "round shape")
        page.click("#reveal")
        assert page.is_visible("#examples-box") and page.locator("#s-examples img").count() >= 1
        assert page.is_disabled('input[name="q1"][value="5"]')  # locked after the reveal
        for q, v in (("q3", 5), ("q4", 3), ("q5", 1), ("q6", 2)):
            _answer(page, q, v)
        if n == 2:  # resumable: reload in the middle
            page.click("#save")
            page.reload()
            assert page.inner_text("#progress").startswith("3 of 6")
            continue
        page.click("#save")
    assert page.is_visible("#done") and page.inner_text("#progress") == "6 of 6 rated"
    with page.expect_download() as dl:
        page.click("#export-json")
    json_path = folder / "export.json"
    dl.value.save_as(json_path)
    with page.expect_download() as dl:
        page.click("#export-csv")
    csv_path = folder / "export.csv"
    dl.value.save_as(csv_path)
    context.close()
    assert errors == []

    doc = json.loads(json_path.read_text())
    assert doc["rater_name"] == "Ada" and sorted(r["feature"] for r in doc["ratings"]) == sorted(ids)
    assert all(r["I"] == 0.75 for r in doc["ratings"])
    assert {r["feature"]: r for r in R.read_ratings_file(csv_path)} == {
        r["feature"]: r for r in R.read_ratings_file(json_path)
    }

    bad = folder / "broken.json"
    bad.write_text(json_path.read_text().replace('"q4": 3', '"q4": 7', 1))
    out = _cli("import-ratings", "-c", str(config), str(bad), cwd=folder)
    assert (
        out.returncode == 2
        and "broken.json" in out.stderr
        and "q4 must be an answer 1-5, got 7" in out.stderr
    )
    assert not (folder / "ratings" / "ratings.json").exists()

    out = _cli("import-ratings", "-c", str(config), str(json_path), cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "6 new" in out.stdout
    # A second rater (the CSV re-labelled) so the means average two raters.
    second = folder / "second.json"
    doc2 = dict(
        doc, rater="r-second", rater_name="Bob", ratings=[dict(r, q1=1, I=0.25) for r in doc["ratings"]]
    )
    second.write_text(json.dumps(doc2))
    assert _cli("import-ratings", "-c", str(config), str(second), str(csv_path), cwd=folder).returncode == 0
    assert _rebuild(config).ran == ["site"]  # imported ratings are an input of the site stage

    f0 = ids[0]
    page_html = (site / "demonet" / "mixed5b" / "f" / str(f0) / "index.html").read_text()
    assert "I = 0.5" in page_html and "mean of 2 raters" in page_html  # (0.75 + 0.25) / 2
    assert "<script>alert" not in page_html and "&lt;script&gt;alert" in page_html
    unrated = next(i for i in range(1000) if i not in ids)
    assert (
        "Rated interpretability"
        not in (site / "demonet" / "mixed5b" / "f" / str(unrated) / "index.html").read_text()
    )
    layer_html = (site / "demonet" / "mixed5b" / "index.html").read_text()
    assert "most important" in layer_html and "middle of the ranking" in layer_html
    assert layer_html.count('class="hist rating-hist"') == 2 and 'class="scatter"' in layer_html
    assert "6 sampled features rated by 2 raters" in layer_html


@needs_chromium
def test_game_scores_a_known_answer(tiny_build, browser):
    _, _, site = tiny_build
    path = site / "demonet" / "mixed5b" / "game" / "index.html"
    context, page, errors = _page(browser)
    page.goto(path.as_uri())
    rounds = page.evaluate("() => window.ATLAS_GAME.rounds")
    assert len(rounds) >= 2 and all(len(r["candidates"]) == 4 for r in rounds)
    assert page.inner_text("#score") == "0 / 0"
    page.click(f'#g-choices button[data-choice="{rounds[0]["answer"]}"]')
    assert page.inner_text("#score") == "1 / 1" and page.inner_text("#verdict") == "Right!"
    page.click("#g-next")
    wrong = (rounds[1]["answer"] + 1) % 4
    page.click(f'#g-choices button[data-choice="{wrong}"]')
    assert page.inner_text("#score") == "1 / 2"
    page.click(f'#g-choices button[data-choice="{rounds[1]["answer"]}"]', force=True)  # one guess per round
    assert page.inner_text("#score") == "1 / 2"
    page.reload()
    assert page.inner_text("#score") == "1 / 2"  # kept locally
    assert page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    context.close()
    assert errors == []
