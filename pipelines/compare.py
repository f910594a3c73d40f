"""MLflow entry point `compare` (see MLproject): `recsys-cl compare`, recorded in the run that
`mlflow run` opened (MLFLOW_RUN_ID); `recsys-cl compare --help` explains every flag."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("compare", flags=("sweep", "experiment", "out", "data-dir", "tracking-uri")))
