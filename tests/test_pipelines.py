"""The MLflow entry points: MLproject parameters become the right `recsys-cl` command lines,
every entry point names a script that exists, and `mlflow run . -e train` records its run."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _entry_module():
    spec = importlib.util.spec_from_file_location(
        "pipelines_entry", REPO / "pipelines" / "_entry.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parameters_become_a_command_line() -> None:
    entry = _entry_module()
    argv = [
        "--config",
        "c.yaml",
        "--overrides",
        "train.epochs=2 model.eps=0.1",
        "--data-dir",
        "",
        "--register",
        "",
    ]
    assert entry.command_line("main", ("config", "data-dir", "register"), argv) == [
        "main", "--config", "c.yaml", "--set", "train.epochs=2", "--set", "model.eps=0.1"
    ]
    argv = ["--run-dir", "runs/x", "--k", "5", "--index", "", "--no-progress"]
    assert entry.command_line("recommend", ("run-dir", "index", "k"), argv) == [
        "recommend", "runs/x", "-k", "5", "--no-progress"
    ]


def test_every_entry_point_builds_a_command_line_recsys_cl_accepts() -> None:
    """Each MLproject command, with its parameters filled in (defaults, and a value for every
    empty one), goes through its script's flag list to a command line the real parser takes
    with every parameter in place."""
    from recsys_cl.cli import build_parser

    entry = _entry_module()
    project = yaml.safe_load((REPO / "MLproject").read_text())
    assert set(project["entry_points"]) == {
        "main",
        "train",
        "evaluate",
        "build_index",
        "recommend",
        "compare",
        "tune",
    }
    samples = {
        "baseline": "most-popular",
        "ks": "10,20",
        "users": "1,2",
        "index": "x.faiss",
        "register": "name",
        "data_dir": "data",
        "out": "outdir",
        "overrides": "train.epochs=2",
        "trials": "7",
        "timeout": "90.5",
        "budget": "60.5",
        "k": "7",
    }
    for name, entry_point in project["entry_points"].items():
        params = entry_point["parameters"]
        # MLflow's `path` type resolves against the caller's folder, not the project's.
        assert all(p["type"] in ("string", "float") for p in params.values()), name
        values = {p: str(spec.get("default") or samples[p]) for p, spec in params.items()}
        argv = _as_mlflow_runs_it(entry_point["command"], values)
        script = argv[1]
        assert (
            argv[0] == "python" and script == f"pipelines/{name}.py" and (REPO / script).is_file()
        )
        command, flags, switches = _command_of(REPO / script)
        args = build_parser().parse_args(entry.command_line(command, flags, argv[2:], switches))
        assert args.command == command
        for param, value in values.items():
            got = getattr(args, param)
            if param in switches:
                assert got is (value == "true"), f"{script}: --{param} {value!r} arrived as {got!r}"
            elif param == "overrides":
                assert got == value.split(), name
            else:
                assert str(got) == value, f"{script}: --{param} {value!r} arrived as {got!r}"
        # MLflow passes an unset optional parameter as an empty string: it must arrive unset,
        # as the command's own default.
        defaults = {p: str(spec.get("default", "")) for p, spec in params.items()}
        argv = _as_mlflow_runs_it(entry_point["command"], defaults)
        parser = build_parser()
        args = parser.parse_args(entry.command_line(command, flags, argv[2:], switches))
        for param, value in defaults.items():
            if not value:
                assert getattr(args, param) == _default_of(parser, command, param), (
                    f"{script}: empty --{param} arrived as {getattr(args, param)!r}"
                )


def _default_of(parser: argparse.ArgumentParser, command: str, dest: str) -> object:
    """The default ``recsys-cl COMMAND`` gives option ``dest`` when it is not given."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a.default for a in sub.choices[command]._actions if a.dest == dest)


def _as_mlflow_runs_it(command: str, values: dict[str, str]) -> list[str]:
    """The argv of an entry point's command: MLflow shell-quotes each value into it."""
    return shlex.split(command.format(**{k: shlex.quote(v) for k, v in values.items()}))


def _command_of(script: Path) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The recsys-cl command, flag list and switch list a pipelines/ script passes to ``run``."""
    import ast

    call = next(
        node for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run"
    )
    command = call.args[0].value
    lists = {k.arg: tuple(e.value for e in k.value.elts) for k in call.keywords}
    return command, lists["flags"], lists.get("switches", ())


def test_switches_become_bare_flags() -> None:
    entry = _entry_module()
    argv = ["--config", "c.yaml", "--space", "s.yaml", "--final", "true", "--resume", "false"]
    assert entry.command_line("tune", ("config", "space"), argv, ("final", "resume")) == [
        "tune", "--config", "c.yaml", "--space", "s.yaml", "--final"
    ]
    with pytest.raises(SystemExit):
        entry.command_line("tune", ("config",), ["--final", "maybe"], ("final",))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.integration
def test_mlflow_run_train_records_into_the_run_mlflow_opened(tmp_path: Path) -> None:
    pytest.importorskip("faiss", reason="the training record includes the FAISS index")
    from mlflow.tracking import MlflowClient

    from tests.conftest import make_long_tail_log

    make_long_tail_log(n_users=120, n_items=200, seed=2).write_csv(tmp_path / "log.csv")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"experiment: mlproject\noutput_dir: {tmp_path / 'run'}\n"
        f"data: {{path: {tmp_path / 'log.csv'}, "
        "split: {kind: ratio, test_ratio: 0.2, val_ratio: 0.1}}\n"
        "model: {method: lightgcn, dim: 8}\ntrain: {epochs: 5, batch_size: 256, progress: false}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
    }
    mlflow = Path(sys.executable).with_name("mlflow")
    done = subprocess.run(
        [
            str(mlflow),
            "run",
            str(REPO),
            "-e",
            "train",
            "--env-manager",
            "local",
            "--experiment-name",
            "mlproject",
            "-P",
            f"config={cfg}",
            "-P",
            "overrides=train.epochs=2 train.eval_every=1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mlproject")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["job"] == "train"
    assert run.data.params["train.epochs"] == "2" and "test/recall_at_20" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "loss/total")) == 2
