"""Experiment tracking: a :class:`Tracker` protocol, a null tracker, the MLflow tracker and plots.

It records runs and nothing else; serving logged models is :mod:`recsys_cl.serving`. Only the
submodules import ``mlflow``, and only when a tracker is actually used: importing
:mod:`recsys_cl.tracking` itself stays cheap.
"""
