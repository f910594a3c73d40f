"""MLflow entry point `main` (see MLproject): `recsys-cl main`, recorded in the run that
`mlflow run` opened (MLFLOW_RUN_ID); `recsys-cl main --help` explains every flag."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("main", flags=("config", "data-dir", "register", "experiment", "tracking-uri")))
