"""report: a static page whose every image and audio link resolves on disk, invalid clusters marked."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from test_evaluate import KS, STALE_K, make_project

from stages import evaluate, report


class PageIndex(HTMLParser):
    """Media links, anchors, K sections and cluster blocks (with their text) of one page."""

    def __init__(self):
        super().__init__()
        self.media: list[tuple[str, str]] = []  # (tag, src)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.k_sections: list[str] = []
        self.invalid_blocks: dict[str, str] = {}  # id -> text inside
        self._block: str | None = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag in ("img", "audio"):
            self.media.append((tag, attrs["src"]))
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])
        if tag == "details" and "k" in classes:
            self.k_sections.append(attrs["id"])
        if tag == "div":
            if self._block is not None:
                self._depth += 1
            elif {"cluster", "invalid"} <= set(classes):
                self._block, self._depth = attrs["id"], 0
                self.invalid_blocks[self._block] = ""

    def handle_endtag(self, tag):
        if tag == "div" and self._block is not None:
            if self._depth == 0:
                self._block = None
            else:
                self._depth -= 1

    def handle_data(self, data):
        if self._block is not None:
            self.invalid_blocks[self._block] += data


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    make_project(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        evaluate.main()
        report.main()
    index = PageIndex()
    index.feed((root / "reports/index.html").read_text(encoding="utf-8"))
    return root, index


def test_every_image_and_audio_link_exists_on_disk(page):
    root, index = page
    pages_dir = root / "reports"
    tags = {tag for tag, _ in index.media}
    assert tags == {"img", "audio"}
    for tag, src in index.media:
        assert not src.startswith(("/", "http:", "https:", "file:")), src
        assert (pages_dir / unquote(src)).resolve().is_file(), f"<{tag}> {src} does not exist"
    # cards (spectrogram + audio) only for clips with a spectrogram: every seed/midi clip (K=2: 10, K=3: 20),
    # real ones of example 0 (2 draws x 3 methods at K=2, x 4 at K=3), 4 anchors; plus evaluate's 3 figures
    assert len(index.media) == 2 * (10 + 20 + 6 + 8 + 4) + 3


def test_tables_are_per_conditioning_with_anchors_intervals_and_verdicts(page):
    root, _ = page
    html = (root / "reports/index.html").read_text(encoding="utf-8")
    for conditioning in ("seed", "midi", "real"):
        assert f"All K (pooled over K) · conditioning {conditioning}" in html
    assert "<td>resynthesis</td>" in html and "<td>mean_z</td>" in html
    assert "temporal beats mean_z on spectral_distance_to_real" in html
    assert "spectral_distance_to_real_best" in html and "kad_to_real" in html
    assert "The seed report&#x27;s experiment" in html or "The seed report's experiment" in html
    assert "at the edge of the K tried" in html


def test_each_listed_k_has_a_section_and_the_stale_k_none(page):
    root, index = page
    assert index.k_sections == [f"k{k}" for k in KS]
    html = (root / "reports/index.html").read_text(encoding="utf-8")
    assert f"samples/k{STALE_K}" not in html and f"K = {STALE_K}" not in html
    assert "Recommended K = 3" in html


def test_invalid_cluster_is_marked_with_its_reason_in_every_method(page):
    _, index = page
    assert sorted(index.invalid_blocks) == ["k3-inverse_transform-c2", "k3-temporal-c2", "k3-temporal_hold-c2"]
    for text in index.invalid_blocks.values():
        assert "INVALID" in text and "hnr_db -3.0 < 5.0 in 6/6 clips" in text and "weight 0.05" in text
    assert all(link in index.ids for link in index.links)  # the invalid-clusters table links to its block


def test_only_the_recommended_k_starts_open_by_default(page):
    root, _ = page
    html = (root / "reports/index.html").read_text(encoding="utf-8")
    assert '<details class="k" id="k3" open>' in html and '<details class="k" id="k2">' in html


def test_report_refuses_results_of_other_ks(page, monkeypatch):
    root, _ = page
    params = yaml.safe_load((root / "params.yaml").read_text())
    changed = root / "changed"
    changed.mkdir()
    (changed / "params.yaml").write_text(yaml.safe_dump({**params, "gmm": {"n_components": [2, 3, 4]}}))
    for name in ("metrics", "reports", "samples"):
        (changed / name).symlink_to(root / name)
    monkeypatch.chdir(changed)
    with pytest.raises(SystemExit, match=r"covers K=\[2, 3\] but the rendered K are \[2, 3, 4\]"):
        report.main()


def test_page_was_logged_to_mlflow(page):
    from mlflow import MlflowClient

    root, _ = page
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")  # not mlflow.set_tracking_uri: it sets os.environ
    experiment = client.get_experiment_by_name("generative-ddsp")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'report'")
    run_id = run.info.run_id
    paths = {Path(a.path).name for a in client.list_artifacts(run_id, "reports")}
    assert {"index.html", "evaluate"} <= paths
    # every linked clip sits at the page's relative link inside the artifact store too
    logged = {a.path for k in KS for a in client.list_artifacts(run_id, f"samples/k{k}/clips")}
    assert logged and all(path.endswith((".wav", ".png")) for path in logged)
