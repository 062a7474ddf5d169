"""``rawguard serve --checkpoint CKPT [--host 127.0.0.1] [--port 8080] [--max-upload-mb 100]
[--max-duration 1800] [--token TOKEN] [--workers N]``."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="Serve a detector over HTTP: a web page at /, POST /v1/score (multipart field 'file' or the raw "
        "body), WS /v1/stream for live PCM, GET /healthz. Binds to localhost unless --host says otherwise. Needs the "
        "'serve' extra: pip install 'rawguard[serve]'.",
    )
    parser.add_argument("--checkpoint", required=True, action="append", metavar="CKPT",
                        help="trained checkpoint (best.pt); repeat it to serve several as one ensemble of their calibrated log-odds")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 for all interfaces)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080)")
    parser.add_argument("--max-upload-mb", type=float, default=100.0, help="largest request body in MB (default: 100)")
    parser.add_argument("--max-duration", type=float, default=1800.0, metavar="S", help="longest recording or stream in seconds (default: 1800)")
    parser.add_argument("--token", default=os.environ.get("RAWGUARD_TOKEN"),
                        help="require 'Authorization: Bearer TOKEN' (default: $RAWGUARD_TOKEN; none: open)")
    parser.add_argument("--workers", type=int, default=1, help="server processes, each with its own model (default: 1)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads per process (default: CPUs / workers)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batching: wait for more requests this long (default: 5)")
    parser.add_argument("--no-batching", action="store_true", help="score one request per model call (for comparison)")
    parser.add_argument("--read-timeout", type=float, default=30.0, metavar="S",
                        help="longest gap between chunks of an upload or stream messages (default: 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from rawguard.serve.server import run_server
        from rawguard.serve.settings import ServeSettings
    except ModuleNotFoundError as error:
        print(f"rawguard serve: error: {error.name} is missing; install the extra: pip install 'rawguard[serve]'", file=sys.stderr)
        return 2
    from rawguard.checkpoint import CheckpointError
    from rawguard.detector import DetectorError

    if args.workers < 1 or not 0 < args.port < 65536:
        print("rawguard serve: error: --workers must be >= 1 and --port in 1-65535", file=sys.stderr)
        return 2
    try:
        settings = ServeSettings(
            checkpoint=args.checkpoint[0] if len(args.checkpoint) == 1 else args.checkpoint, max_upload_mb=args.max_upload_mb, max_duration=args.max_duration, token=args.token,
            max_wait_ms=args.max_wait_ms, batched=not args.no_batching, read_timeout=args.read_timeout,
            device=args.device, threads=args.threads,
        )
        run_server(settings, host=args.host, port=args.port, workers=args.workers)
    except (CheckpointError, DetectorError, ValueError, OSError) as error:
        print(f"rawguard serve: error: {error}", file=sys.stderr)
        return 2
    return 0
