"""``rawguard export --checkpoint CKPT --onnx OUT.onnx``."""

from __future__ import annotations

import argparse
import sys


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="Export a trained detector to ONNX (inputs 'waveform' [batch, time] float32 at 16 kHz; "
        "outputs 'logits' [batch, 2] and 'score' [batch]); threshold, calibration and window are stored as "
        "metadata. The export is checked against PyTorch with onnxruntime. Needs: pip install 'rawguard[onnx]'.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="trained checkpoint (best.pt)")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="output file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument(
        "--exporter", choices=["torchscript", "dynamo"], default="torchscript",
        help="torchscript: dynamic batch and time (default); dynamo: torch.export, time fixed to the window",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rawguard.checkpoint import CheckpointError
    from rawguard.detector import DetectorError
    from rawguard.export import ExportError, export_onnx

    try:
        result = export_onnx(args.checkpoint, args.onnx, opset=args.opset, exporter=args.exporter, verify=not args.no_verify)
    except (CheckpointError, DetectorError, ExportError) as error:
        print(f"rawguard export: error: {error}", file=sys.stderr)
        return 1
    axes = "batch and time" if result["dynamic_time"] else "batch (time fixed to the window)"
    print(f"wrote {result['path']} (dynamic {axes})")
    if not args.no_verify:
        print(f"onnxruntime vs PyTorch: max |score difference| {result['max_abs_diff']:.2e} on shapes {result['checked_shapes']}")
    return 0
