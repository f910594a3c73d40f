"""The MLflow "model from code" of a candidate bundle (see :mod:`.pyfunc`).

MLflow copies this file into the logged model and runs it on load instead of unpickling an
object (https://mlflow.org/docs/latest/ml/model/models-from-code/), so the logged model holds
code, a bundle of Parquet/JSON/FAISS files and no pickle. The loading environment needs
``recsys_cl`` importable (serve with ``--env-manager local`` from its environment).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from recsys_cl.errors import RecsysError
from recsys_cl.retrieval.candidate_model import CandidateModel


class CandidatePyfunc(PythonModel):
    """``predict(frame, params={"k": int})`` of a :class:`CandidateModel` loaded from the
    model's ``bundle`` artifact."""

    def __init__(self) -> None:
        self._model: CandidateModel | None = None

    def load_context(self, context: PythonModelContext) -> None:
        self._model = CandidateModel.load(context.artifacts["bundle"])

    # A pandas type hint leaves input checking to the signature (MLflow infers no schema from it).
    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self._model is None:
            raise RuntimeError("the candidate bundle is not loaded (load_context was not called)")
        try:
            return self._model.predict(model_input, k=(params or {}).get("k"))
        except RecsysError as exc:
            # MLflow's scoring server answers an MlflowException with its message (HTTP 400);
            # any other exception becomes a generic "unexpected error" with a stack trace.
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc


set_model(CandidatePyfunc())
