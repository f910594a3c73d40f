"""Experiment tracking: a :class:`Tracker` protocol, a null tracker, and the MLflow tracker.

Only the submodules of this package import ``mlflow``, and only when a tracker or a candidate
model is actually used: importing :mod:`recsys_cl.tracking` itself stays cheap.
"""
