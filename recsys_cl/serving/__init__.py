"""Serving candidate models: the MLflow pyfunc wrapper of a candidate bundle (:mod:`.pyfunc`,
:mod:`.pyfunc_code`), finding logged models by URI (:mod:`.model_uris`) and the HTTP server of
``recsys-cl serve`` (:mod:`.server`).

It sits above :mod:`recsys_cl.retrieval` (it serves its :class:`CandidateModel`) and beside
:mod:`recsys_cl.tracking`, which records runs and nothing else. The submodules import
``mlflow``; importing this package itself stays cheap.
"""
