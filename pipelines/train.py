"""MLflow entry point `train` (see MLproject): `recsys-cl train`, recorded in the run that
`mlflow run` opened (MLFLOW_RUN_ID); `recsys-cl train --help` explains every flag."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("train", flags=("config", "data-dir", "experiment", "tracking-uri")))
