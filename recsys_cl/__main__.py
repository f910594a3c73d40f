"""``python -m recsys_cl``: the ``recsys-cl`` command, also what ``torchrun -m recsys_cl`` runs
in every rank of a distributed job."""

from recsys_cl.cli import run

if __name__ == "__main__":
    run()
