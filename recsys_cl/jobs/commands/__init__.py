"""The ``recsys-cl`` command handlers: ``argparse`` options in, stages run, results printed."""
