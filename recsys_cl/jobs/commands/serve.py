"""``recsys-cl serve``: the command line's side of :func:`recsys_cl.serving.server.serve`."""

from __future__ import annotations

import argparse


def serve_job(args: argparse.Namespace) -> int:
    """Serve ``args.model_uri`` until stopped (Ctrl-C / SIGTERM)."""
    from recsys_cl.serving.server import serve
    from recsys_cl.tracking.mlflow_tracker import resolve_tracking_uri

    serve(
        args.model_uri,
        tracking_uri=resolve_tracking_uri(args.tracking_uri),
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_body_bytes=int(args.max_body_mb * 2**20),
    )
    return 0


__all__ = ["serve_job"]
