"""Stages: typed steps from a config to a run folder and from a run folder to its outputs."""
