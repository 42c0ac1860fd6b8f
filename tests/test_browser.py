"""What people look at, in a real headless Chromium: the report page and the MLflow UI's K comparison.

Debian's chromium (installed by .ci/run) driven by Playwright with an explicit executable path; no
browser download. Outside CI, a machine without /usr/bin/chromium skips these tests.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from services import rendered_ks, samples_folder

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# no background networking: this machine's closed network refuses it, and nothing may leave 127.0.0.1
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    page.screenshot(path=str(tmp_path / "last.png"), full_page=True)  # kept by pytest for a failed run
    context.close()


def test_report_page_images_load_and_every_clip_has_a_playable_audio_element(tiny_project, page):
    clips = pd.concat([*(pd.read_csv(samples_folder(tiny_project, k) / "clips.csv") for k in rendered_ks(tiny_project)),
                       pd.read_csv(tiny_project / "samples/anchors/clips.csv")])  # seed only: every clip is shown
    page.goto((tiny_project / "reports/index.html").as_uri())
    # every K section open and every image eager, so nothing waits on scrolling
    page.evaluate("""() => {
        document.querySelectorAll('details').forEach(d => d.open = true);
        document.querySelectorAll('img').forEach(img => img.loading = 'eager');
    }""")
    page.wait_for_function("[...document.images].every(img => img.complete)")
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
    assert len(images) == len(clips) + 3, "a spectrogram per clip (and anchor) and the three evaluation figures"
    broken = [src for src, width in images if width == 0]
    assert not broken, f"images that did not load: {broken[:5]}"

    assert page.locator("audio").count() == len(clips)
    # the players' WAVs decode: metadata (duration) loads for each
    page.evaluate("() => document.querySelectorAll('audio').forEach(a => { a.preload = 'metadata'; a.load(); })")
    page.wait_for_function("[...document.querySelectorAll('audio')].every(a => a.readyState >= 1)")
    durations = page.eval_on_selector_all("audio", "els => els.map(a => a.duration)")
    assert all(duration == pytest.approx(1.0, abs=0.05) for duration in durations)


def test_mlflow_ui_lists_and_compares_the_k_runs_side_by_side(tiny_project, mlflow_uri, page):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("generative-ddsp")
    k_runs = client.search_runs([experiment.experiment_id], "tags.pipeline_role = 'k'", max_results=100)
    names = sorted({run.info.run_name for run in k_runs})
    assert names == [f"K={k}" for k in rendered_ks(tiny_project)]

    # the runs table, sorted by a metric so child runs are listed flat rather than folded under their parent
    page.goto(f"{mlflow_uri}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
              "&orderByKey=metrics.%60bic%60&orderByAsc=true")
    for name in names:
        page.get_by_role("link", name=name, exact=True).first.wait_for()

    newest = {}
    for run in k_runs:  # one per K from the newest pipeline execution
        newest.setdefault(run.info.run_name, run)
    ids = [newest[name].info.run_id for name in names]
    page.goto(f"{mlflow_uri}/#/compare-runs?runs={quote(json.dumps(ids))}"
              f"&experiments={quote(json.dumps([experiment.experiment_id]))}")
    page.get_by_role("heading", name=f"Comparing {len(ids)} Runs").wait_for()
    header = page.locator("tr", has_text="Run Name:").first.inner_text()
    assert all(name in header for name in names)
    metric_names = set(page.locator('a[title="Plot chart"]').all_inner_texts())
    assert {"bic", "heldout_loglik"} <= metric_names
