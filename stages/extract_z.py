"""DVC stage ``extract_z``: the trained encoder over every prepared example -> z frames table.

Run as ``python -m stages.extract_z``. Code: :mod:`pipeline.model.extract` (the table format:
:mod:`pipeline.latent`). Deps: the model folder (``train.model_dir``) and the prepared data. Outs:
``extract_z.out_path`` (parquet, one row per native z frame); metrics: ``metrics/extract_z.json``.
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.model.extract import extract_checked
from pipeline.paths import Paths
from pipeline.publish import write_json_atomic
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    summary = extract_checked(paths.model_dir, paths.prepared_dir, paths.z_table, params.extract_z.batch_size)
    metrics = {"rows": summary.rows, "examples": summary.examples, "z_dims": summary.z_dims,
               "z_time_steps": summary.z_time_steps}
    write_json_atomic(paths.extract_metrics, metrics)
    print(f"extract_z: {summary.rows} z frames ({summary.z_dims} dims, {summary.frames_per_s:.0f} frames/s) "
          f"-> {paths.z_table}")
    with stage_run("extract_z", paths.root, params.tracking) as run:
        run.log_params({"extract_z": params.extract_z.model_dump()})
        run.log_metrics({**metrics, "frames_per_s": summary.frames_per_s})


if __name__ == "__main__":
    main()
