"""MLflow entry point `tune` (see MLproject): `recsys-cl tune`, its parent run the one `mlflow
run` opened (MLFLOW_RUN_ID); `recsys-cl tune --help` explains every flag."""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(
        run(
            "tune",
            flags=("config", "space", "trials", "timeout", "out", "data-dir", "tracking-uri"),
            switches=("final", "resume"),
        )
    )
