"""MLflow: ``runs`` (one parent run per pipeline execution, child runs per stage and per K) and
``registry`` (register a trained model, promote it only when better). Only this package imports MLflow."""
