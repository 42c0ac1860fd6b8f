"""Prefect flows over the DVC pipeline: ``build`` (every stage through DVC) and ``retrain``
(pull, build, register and promote if better, push). Only this package imports Prefect."""
