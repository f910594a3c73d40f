"""MLflow entry point `build_index` (see MLproject): `recsys-cl index`, recorded in the run that
`mlflow run` opened (MLFLOW_RUN_ID); `recsys-cl index --help` explains every flag."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("index", flags=("run-dir", "spec", "metric", "tracking-uri")))
