"""DVC stage ``choose_k``: the recommended K from a held-out log-likelihood sweep, never silently the largest tried.

Run as ``python -m stages.choose_k``. Code: :mod:`pipeline.prior.selection` (``sweep_k``, on the z table:
:mod:`pipeline.latent`). DVC's matrix is static, so fit_gmm@K and sample@K render the Ks listed in
``gmm.n_components``; this stage says which K the data support (``recommended_k``), whether it sits at
the edge of the sweep (``recommended_k_at_grid_edge``); evaluate says whether it is one of the listed Ks.
Metrics: ``metrics/choose_k.json`` (the Ks tried and their held-out log-likelihoods).
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.paths import Paths
from pipeline.prior.selection import sweep_for_params
from pipeline.publish import write_json_atomic
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    sweep = sweep_for_params(paths.z_table, params.choose_k, params.gmm, params.seed)
    write_json_atomic(paths.choose_k_metrics, sweep.as_dict())
    print(f"choose_k: recommended K={sweep.recommended_k} ({sweep.reason}); tried {sweep.ks}")
    with stage_run("choose_k", paths.root, params.tracking) as run:
        run.log_params({"seed": params.seed, "choose_k": params.choose_k.model_dump()})
        run.log_metrics({"recommended_k": sweep.recommended_k,
                         "recommended_k_at_grid_edge": int(sweep.recommended_k_at_grid_edge),
                         **{f"heldout_loglik_k{k}": v for k, v in zip(sweep.ks, sweep.heldout_loglik)}})


if __name__ == "__main__":
    main()
