"""``python -m recsys_cl.cli``: the ``recsys-cl`` command."""

from recsys_cl.cli import run

if __name__ == "__main__":
    run()
