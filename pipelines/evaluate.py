"""MLflow entry point `evaluate` (see MLproject): `recsys-cl evaluate`, recorded in the run that
`mlflow run` opened (MLFLOW_RUN_ID); `recsys-cl evaluate --help` explains every flag."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("evaluate", flags=("run-dir", "baseline", "budget", "ks", "tracking-uri")))
