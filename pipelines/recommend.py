"""MLflow entry point `recommend` (see MLproject): `recsys-cl recommend`, recorded in the run that
`mlflow run` opened (MLFLOW_RUN_ID); `recsys-cl recommend --help` explains every flag."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(
        run("recommend", flags=("run-dir", "index", "users", "k", "cold-start", "tracking-uri"))
    )
