"""DVC stage ``extract_z``: the trained encoder over every prepared example -> z frames table.

Run as ``python -m stages.extract_z``. Deps: the model folder (``train.model_dir``) and the prepared
data. Outs: ``extract_z.out_path`` (parquet, one row per native z frame; see
:mod:`pipeline.model.extract` for the choice of frame rate); metrics: ``metrics/extract_z.json``.
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.fsutil import write_json_atomic
from pipeline.model.extract import extract_z
from pipeline.model.store import load_model, read_config
from pipeline.tfrecord import DatasetSpec
from pipeline.tracking import stage_run

METRICS_FILE = "metrics/extract_z.json"


def main() -> None:
    params = load_params()
    root = project_root()
    data_dir = root / params.prepare.out_dir
    model_dir = root / params.train.model_dir
    spec = DatasetSpec.load(data_dir)
    _, trained_on = read_config(model_dir)
    if spec != trained_on:
        raise RuntimeError(f"{data_dir} ({spec}) is not the data the model in {model_dir} was trained on "
                           f"({trained_on}): rerun the train stage")
    summary = extract_z(load_model(model_dir), data_dir, spec, root / params.extract_z.out_path,
                        params.extract_z.batch_size)
    metrics = {"rows": summary.rows, "examples": summary.examples, "z_dims": summary.z_dims,
               "z_time_steps": summary.z_time_steps, "frames_per_s": summary.frames_per_s}
    write_json_atomic(root / METRICS_FILE, metrics)
    print(f"extract_z: {summary.rows} z frames ({summary.z_dims} dims, {summary.frames_per_s:.0f} frames/s) "
          f"-> {root / params.extract_z.out_path}")
    with stage_run("extract_z", root, params.tracking) as run:
        run.log_params({"extract_z": params.extract_z.model_dump()})
        run.log_metrics(metrics)


if __name__ == "__main__":
    main()
