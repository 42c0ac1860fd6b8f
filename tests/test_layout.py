"""The layout holds: DVC deps cover every module a stage imports, stages stay apart, names come from one place.

The deps check walks each stage's imports (every ``import`` statement, transitively, inside the
project) and needs every module it reaches to lie under one of the stage's deps in dvc.yaml, or in
:data:`INFRASTRUCTURE`: shared code that never shapes an output, so editing it reruns nothing.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

# Shared infrastructure that never shapes a stage's output: not a DVC dep of any stage, and not
# walked into (pipeline.config reaches pipeline.model.presets, which only train's output depends on).
INFRASTRUCTURE = ("pipeline/__init__.py", "pipeline/compat.py", "pipeline/quiet.py", "pipeline/config.py",
                  "pipeline/vocab.py", "pipeline/paths.py", "pipeline/publish.py", "pipeline/tracking")
PACKAGES = ("pipeline", "stages")


def module_file(module: str, root: Path) -> Path | None:
    """The project file of a dotted module name (a package's ``__init__.py``), or None if not ours."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every project module one file imports (at any depth of the file), with the packages it passes through."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pipeline import cli` imports the module pipeline.cli; `from x.y import name` imports x.y
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                         if module_file(".".join(parts[:i]), root))
    return found


def _exempt(relative: str) -> bool:
    return any(relative == item or relative.startswith(item.rstrip("/") + "/") for item in INFRASTRUCTURE)


def reached_files(module: str, root: Path) -> set[str]:
    """Project files (relative paths) that running ``python -m <module>`` imports, infrastructure excluded."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        path = module_file(todo.pop(), root)
        relative = path.relative_to(root).as_posix()
        if relative in seen or _exempt(relative):
            continue
        seen.add(relative)
        todo.extend(imported_modules(path, root))
    return seen


def stage_modules(dvc_yaml: dict) -> dict[str, str]:
    """Stage name -> the module its cmd runs (``python -m stages.train`` -> ``stages.train``)."""
    modules = {}
    for name, stage in dvc_yaml["stages"].items():
        match = re.search(r"-m\s+(stages\.\w+)", stage["cmd"])
        assert match, f"stage {name}: cmd {stage['cmd']!r} does not run a module of stages/"
        modules[name] = match.group(1)
    return modules


def uncovered_imports(dvc_yaml: dict, root: Path) -> dict[str, list[str]]:
    """Per stage, the modules it imports that none of its deps covers (empty when the deps are right)."""
    problems = {}
    for name, module in stage_modules(dvc_yaml).items():
        deps = [str(dep).rstrip("/") for dep in dvc_yaml["stages"][name]["deps"] if "${" not in str(dep)]
        missing = sorted(f for f in reached_files(module, root)
                         if not any(f == dep or f.startswith(dep + "/") for dep in deps))
        if missing:
            problems[name] = missing
    return problems


@pytest.fixture(scope="module")
def dvc_yaml() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


def test_every_stage_depends_on_every_module_it_imports(dvc_yaml):
    assert uncovered_imports(dvc_yaml, REPO_ROOT) == {}


def test_the_deps_check_fails_when_a_stage_leaves_an_import_uncovered(dvc_yaml):
    broken = yaml.safe_load(yaml.safe_dump(dvc_yaml))
    broken["stages"]["fit_gmm"]["deps"].remove("pipeline/latent")
    broken["stages"]["sample"]["deps"].remove("stages/sample.py")
    problems = uncovered_imports(broken, REPO_ROOT)
    assert set(problems) == {"fit_gmm", "sample"}
    assert "pipeline/latent/ztable.py" in problems["fit_gmm"]
    assert problems["sample"] == ["stages/sample.py"]


def test_the_import_walk_sees_deferred_imports_and_skips_infrastructure():
    reached = reached_files("stages.sample", REPO_ROOT)
    assert "pipeline/model/decode.py" in reached, "imports inside functions count"
    assert "pipeline/generation/render.py" in reached
    assert not any(_exempt(f) for f in reached)
    assert "pipeline/model/presets.py" not in reached_files("stages.corpus", REPO_ROOT), \
        "the walk does not follow pipeline.config into the training presets"


def test_every_stage_depends_on_the_lock_and_its_own_file(dvc_yaml):
    for name, module in stage_modules(dvc_yaml).items():
        deps = dvc_yaml["stages"][name]["deps"]
        assert "requirements.lock" in deps, name
        assert module.replace(".", "/") + ".py" in deps, name


def test_no_stage_imports_another_stage():
    for path in sorted((REPO_ROOT / "stages").glob("*.py")):
        own = f"stages.{path.stem}"
        others = {m for m in imported_modules(path, REPO_ROOT) if m.startswith("stages.") and m != own}
        assert not others, f"{path.name} imports {sorted(others)}"


def test_library_below_tracking_and_flows_never_imports_mlflow_prefect_or_dvc():
    for path in sorted((REPO_ROOT / "pipeline").rglob("*.py")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if relative.startswith(("pipeline/tracking/", "pipeline/flows/")):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad = [n for n in names if n.split(".")[0] in ("mlflow", "prefect", "dvc")]
            assert not bad, f"{relative} imports {bad}"


def test_dvc_plots_list_exactly_the_vocabulary(dvc_yaml):
    from pipeline.vocab import ALL_METHODS, CLIP_METRICS, VALID_SHARE

    per_method = {}
    for block in dvc_yaml["plots"]:
        (name, spec), = block.items()
        for csv_path, columns in spec["y"].items():
            if "/vs_k/" in csv_path:
                per_method[Path(csv_path).stem] = (name, list(columns))
    assert sorted(per_method) == sorted((*CLIP_METRICS, VALID_SHARE))
    for metric, (name, columns) in per_method.items():
        assert name == f"evaluate/{metric}"
        assert columns == list(ALL_METHODS), f"plot {name} lists {columns}"


def test_dvc_outs_are_the_paths_module(dvc_yaml):
    """Every out, metric and plot file of dvc.yaml (resolved on params.yaml) is a path pipeline.paths computes."""
    from dvc.repo import Repo

    from pipeline.config import load_params
    from pipeline.paths import Paths
    from pipeline.vocab import RECOMMENDED

    params = load_params(REPO_ROOT / "params.yaml")
    paths = Paths(params, REPO_ROOT.resolve())
    ks = params.gmm.n_components
    expected = {paths.corpus_dir, paths.corpus_metrics, paths.prepared_dir, paths.prepare_plots,
                paths.prepare_metrics, paths.model_dir, paths.train_metrics, paths.train_loss, paths.z_table,
                paths.extract_metrics, paths.evaluate_metrics, paths.evaluate_plots, paths.evaluate_report,
                paths.report_page, paths.anchors_dir, paths.anchors_metrics, paths.choose_k_metrics}
    expected |= {p for k in (*ks, RECOMMENDED) for p in (paths.mixture_dir(k), paths.mixture_metrics(k),
                                                         paths.samples_dir(k), paths.sample_metrics(k))}
    with Repo(str(REPO_ROOT)) as repo:
        declared = {Path(out.fs_path).resolve() for stage in repo.index.stages for out in stage.outs}
    assert declared == expected


def test_each_stage_file_names_its_library_code(dvc_yaml):
    """From dvc.yaml's cmd to the code in one step: every stage file's docstring says where its code is."""
    for name, module in stage_modules(dvc_yaml).items():
        doc = ast.get_docstring(ast.parse((REPO_ROOT / (module.replace(".", "/") + ".py")).read_text())) or ""
        assert f"DVC stage ``{name.split('@')[0]}" in doc, f"{module}'s docstring does not name its stage"
        for target in re.findall(r":mod:`([\w.]+)`", doc.split("Code:", 1)[-1]):
            assert module_file(target, REPO_ROOT), f"{module} points at {target}, which does not exist"
        assert "Code: :mod:`pipeline." in doc, f"{module}'s docstring does not say where its code is"


def test_readme_architecture_and_gddsp_help_agree():
    from pipeline.cli import build_parser

    readme = (REPO_ROOT / "README.md").read_text()
    architecture = (REPO_ROOT / "ARCHITECTURE.md").read_text()
    subcommands = next(action for action in build_parser()._actions if action.dest == "command").choices
    for command in subcommands:
        assert f"gddsp {command}" in readme, f"README does not show `gddsp {command}`"
        assert f"gddsp {command}" in architecture, f"ARCHITECTURE.md does not mention `gddsp {command}`"
    for stale in ("stages.generate", "ddsp-generate", "DESIGN.md"):
        assert stale not in readme and stale not in architecture
    for folder in sorted(p.name for p in (REPO_ROOT / "pipeline").iterdir() if (p / "__init__.py").is_file()):
        assert f"pipeline/{folder}/" in architecture, f"ARCHITECTURE.md does not describe pipeline/{folder}/"


def test_code_cites_only_files_that_exist():
    cited = re.compile(r"\b((?:bench|tests|pipeline|stages|deploy)/[\w/]+\.(?:py|md|json|yaml)|[A-Z]+\.md)\b")
    for path in [*REPO_ROOT.glob("pipeline/**/*.py"), *REPO_ROOT.glob("stages/*.py")]:
        for name in cited.findall(path.read_text()):
            assert (REPO_ROOT / name).exists(), f"{path.relative_to(REPO_ROOT)} cites {name}, which does not exist"


def test_docstring_references_name_code_that_exists():
    """Sphinx-style references to pipeline modules (func, mod, class) name a module that exists and a name in it."""
    role = re.compile(r":(?:mod|func|class|meth|data|attr):`~?(pipeline\.[\w.]+)`")
    for path in [*REPO_ROOT.glob("pipeline/**/*.py"), *REPO_ROOT.glob("stages/*.py"), *REPO_ROOT.glob("tests/*.py")]:
        for target in role.findall(path.read_text()):
            parts = target.split(".")
            depth = max((i for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]), REPO_ROOT)), default=0)
            where = f"{path.relative_to(REPO_ROOT)} cites {target}"
            assert depth >= 2, f"{where}: no such module"
            if depth < len(parts):
                source = module_file(".".join(parts[:depth]), REPO_ROOT).read_text()
                name = parts[depth]
                assert re.search(rf"^\s*(def|class)\s+{name}\b|^{name}\s*[:=]|import .*\b{name}\b", source, re.M), \
                    f"{where}: {name} is not defined there"
