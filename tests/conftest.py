"""Shared fixtures: tiny real audio written to temporary folders."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before any test module imports TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

import pipeline  # noqa: E402,F401  (applies pipeline.compat before TensorFlow loads)

REPO_ROOT = Path(__file__).resolve().parents[1]


def harmonic_tone(secs: float, sample_rate: int, f0_hz: float, amplitude: float = 0.3, n_harmonics: int = 4,
                  seed: int = 0) -> np.ndarray:
    """A piano-ish decaying harmonic tone with a little noise: real audio with a known pitch."""
    t = np.arange(int(round(secs * sample_rate))) / sample_rate
    tone = sum(np.sin(2 * np.pi * f0_hz * (k + 1) * t) / (k + 1) for k in range(n_harmonics))
    envelope = 0.6 + 0.4 * np.exp(-2.0 * (t % 1.0))
    noise = np.random.default_rng(seed).normal(0, 0.002, len(t))
    return (amplitude * tone * envelope / n_harmonics * 2 + noise).astype(np.float32)


def write_audio(path: Path, audio: np.ndarray, sample_rate: int, channels: int = 1, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.repeat(audio[:, None], channels, axis=1) if channels > 1 else audio
    sf.write(str(path), data, sample_rate, **kwargs)
    return path


# --- parallel runs: `make test` runs two pytest-xdist workers ---------------------------------------
# A worker builds its own copy of every session fixture it uses. The tiny build and the servers below are
# the dearest, so the modules that use them go to one worker as one unit; every other module is a unit of
# its own, so its module-scoped projects are built once. (xdist's own loadgroup cannot group by a hook
# on pytest 9, so the units are made here.)
SHARED_SERVICES = {"tiny_build", "tiny_project", "mlflow_uri", "postgres_uri", "prefect_api"}
SHARED_SERVICE_MODULES = {"test_browser", "test_deploy", "test_mlflow_postgres", "test_orchestration",
                          "test_reproducibility", "test_worker"}


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "shared-services" if Path(module).stem in SHARED_SERVICE_MODULES else module

    config.option.loadscopereorder = False  # units in collection order: the shared one and test_bench go first
    return ByModule(config, log)


def pytest_collection_modifyitems(items):
    for item in items:
        uses = SHARED_SERVICES & set(item.fixturenames)
        if uses and item.module.__name__ not in SHARED_SERVICE_MODULES:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(uses)}: add {item.module.__name__} to "
                                    "SHARED_SERVICE_MODULES in tests/conftest.py")


@pytest.fixture
def tone_factory():
    return harmonic_tone


@pytest.fixture
def audio_writer():
    return write_audio


# --- real services for the orchestration tests (tests/services.py); started only when a test asks --

def require_system_package(found, what: str, install: str) -> None:
    """A missing system package skips the test on a developer's machine and fails it under CI (.ci/run
    installs it)."""
    if found:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: .ci/run installs it ({install})")
    pytest.skip(f"{what} is not installed ({install})")


@pytest.fixture(scope="session")
def postgres_uri():
    """SQLAlchemy URI of a database on a PostgreSQL server of the test session's own (Debian's packages)."""
    from services import postgres_bin, postgres_server

    bin_dir = postgres_bin()
    require_system_package(bin_dir, "PostgreSQL (initdb, postgres)", "apt-get install postgresql")
    with postgres_server(bin_dir) as uri:
        yield uri


@pytest.fixture(scope="session")
def mlflow_uri(request, tmp_path_factory):
    """An ``mlflow server`` as teams run it: PostgreSQL backend store, proxied artifacts. Where PostgreSQL is
    not installed (outside CI), a SQLite backend instead, so the other orchestration tests still run."""
    from services import mlflow_server, postgres_bin

    backend = request.getfixturevalue("postgres_uri") if postgres_bin() or os.environ.get("CI") else None
    with mlflow_server(tmp_path_factory.mktemp("mlflow"), backend) as uri:
        yield uri


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """(PREFECT_HOME, API URL) of a `prefect server` of the test session's own."""
    from services import prefect_server

    home = tmp_path_factory.mktemp("prefect") / "home"
    with prefect_server(home) as api_url:
        yield home, api_url


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory, mlflow_uri):
    """The tiny project built by `dvc repro` (as `make run` does), logging to the MLflow server, and the
    sha256 of every file of its DVC outs as built (tests may change the project afterwards)."""
    from services import dvc, make_tiny_project, out_digests, run, stage_env

    root = make_tiny_project(tmp_path_factory.mktemp("tiny") / "project")
    run(dvc("repro"), root, stage_env(MLFLOW_TRACKING_URI=mlflow_uri))
    return root, out_digests(root)


@pytest.fixture(scope="session")
def tiny_project(tiny_build):
    return tiny_build[0]
