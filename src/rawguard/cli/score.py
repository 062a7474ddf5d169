"""``rawguard score --checkpoint CKPT PATH... [--json] [--out results.jsonl|DIR] [--window S --hop S]``."""

from __future__ import annotations

import argparse
import json
import sys

from rawguard.conventions import SAMPLE_RATE


def add_model_arguments(parser: argparse.ArgumentParser, ensembles: bool = False) -> None:
    """Options shared by ``score``, ``stream`` and ``evaluate``: checkpoint(s), device, batch and scoring windows.

    With ``ensembles``, ``--checkpoint`` may be repeated: several checkpoints are scored as one equal-weight ensemble of
    their calibrated log-odds (:meth:`rawguard.detector.Detector.from_checkpoints`).
    """
    if ensembles:
        parser.add_argument("--checkpoint", required=True, action="append", metavar="CKPT",
                            help="trained checkpoint (best.pt); repeat it to score several as one ensemble of their "
                            "calibrated log-odds")
    else:
        parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="trained checkpoint (best.pt)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per forward pass (default: 64)")
    parser.add_argument("--window", type=float, metavar="S", help="scoring window in seconds (default: the checkpoint's)")
    parser.add_argument("--hop", type=float, metavar="S", help="hop between windows in seconds (default: the checkpoint's, or the window)")
    parser.add_argument("--full-length", action="store_true", help="score each recording in one pass instead of windows")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for inference (default: torch's choice)")


MAX_WINDOW_SECONDS = 600  # a 64-window batch of 10 min is ~2.5 GB of float32 already


def apply_scoring_options(args: argparse.Namespace) -> tuple[int | None | str, int | None]:
    """Apply ``--threads`` and return ``(window, hop)`` in samples for :meth:`Detector.from_checkpoint`."""
    if args.threads is not None:
        if args.threads <= 0:
            raise ValueError(f"--threads: must be a positive number, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    for name in ("window", "hop"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name}: must be a positive number of seconds, got {value}")
        if value is not None and value > MAX_WINDOW_SECONDS:
            # A sample count passed as seconds (--window 32000) would allocate tens of GB per batch.
            raise ValueError(
                f"--{name}: {value:g} s is more than {MAX_WINDOW_SECONDS} s; the option is in seconds "
                f"(2 s = {2 * SAMPLE_RATE} samples); --full-length scores whole recordings"
            )
    if args.full_length:
        return None, None
    window = round(args.window * SAMPLE_RATE) if args.window is not None else "checkpoint"
    hop = round(args.hop * SAMPLE_RATE) if args.hop is not None else None
    return window, hop


def register(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(
        name,
        help=help,
        description="Score audio files and folders (recursively, any audio format). Recordings longer than "
        "the window are scored by sliding windows; the file's score is their mean. Per file: score, calibrated "
        "probability of bona fide, decision at the dev threshold, per-window scores and spoof-like time ranges. "
        "Exit code 1 if any file failed (the others are still scored).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line (JSON Lines)")
    parser.add_argument(
        "--out", metavar="results.jsonl|DIR",
        help="write JSON Lines there instead of stdout, resumably: a rerun scores only files not done yet "
        "(or changed); failures go to results.errors.jsonl. Under torchrun give a folder: each rank writes "
        "part-<rank>.jsonl, rank 0 merges them into DIR/results.jsonl",
    )
    parser.add_argument("--workers", type=int, metavar="N",
                        help="with --out: decoder processes (default: cores - 1, at least 1)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                        help="run the network with PyTorch (default) or ONNX Runtime (CPU only; extra 'onnx')")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"],
                        help="torch backend: autocast precision of the forward pass (default: fp32; bf16 scores "
                        "differ from fp32 by ~1e-2, so decisions near the threshold can flip)")
    parser.add_argument("--onnx", metavar="MODEL.onnx",
                        help="with --backend onnx: a graph from 'rawguard export' (default: export the checkpoint now)")
    add_model_arguments(parser, ensembles=True)
    parser.set_defaults(func=run)


def _text_lines(result) -> list[str]:
    lines = [
        f"{result.path}\tscore {result.score:+.4f}\tP(bona fide) {result.probability_bonafide:.3f}\t{result.decision}"
    ]
    if len(result.windows) > 1:
        for window in result.windows:
            lines.append(f"  {window.start:8.2f}-{window.end:8.2f} s\tscore {window.score:+.4f}\tP(bona fide) {window.probability_bonafide:.3f}")
        ranges = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in result.spoofed_ranges) or "none"
        lines.append(f"  spoof-like ranges: {ranges}")
    return lines


def run(args: argparse.Namespace) -> int:
    from rawguard.checkpoint import CheckpointError
    from rawguard.detector import Detector, DetectorError, find_audio_files
    from rawguard.export import ExportError
    from rawguard.progress import progress_bar

    try:
        window, hop = apply_scoring_options(args)
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers: expected at least 1 decoder process, got {args.workers}")
        detector = Detector.from_checkpoints(args.checkpoint, device=_rank_device(args.device), window=window, hop=hop,
                                             batch_size=args.batch_size)
        detector.precision = args.precision
        detector.scorer()  # checks the precision on this device now
        if args.backend == "onnx":
            if args.precision != "fp32":
                raise ValueError(f"--precision {args.precision}: applies to the torch backend only")
            detector.model = _onnx_model(args, detector)
        elif args.onnx is not None:
            raise ValueError("--onnx: give --backend onnx too (the default backend runs the checkpoint with PyTorch)")
    except (CheckpointError, DetectorError, ExportError, ValueError) as error:
        print(f"rawguard score: error: {error}", file=sys.stderr)
        return 2
    for note in detector.notes:
        print(f"rawguard score: note: {note}", file=sys.stderr)
    if args.out is not None:
        return _run_archive(args, detector)
    files = find_audio_files(args.paths)
    if not files:
        print(f"rawguard score: error: no audio files under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    failed = 0
    progress = progress_bar(detector.score_files(files), total=len(files), desc="scoring", unit="file", file=sys.stderr, disable=None)
    for path, outcome in progress:
        if isinstance(outcome, Exception):
            failed += 1
            reason = getattr(outcome, "reason", None) or str(outcome)  # AudioError's message repeats the path
            if args.json:
                progress.write(json.dumps({"path": str(path), "error": reason}), file=sys.stdout)
            else:
                progress.write(f"{path}\tERROR\t{reason}", file=sys.stdout)
            continue
        if args.json:
            progress.write(json.dumps(outcome.to_dict()), file=sys.stdout)
        else:
            progress.write("\n".join(_text_lines(outcome)), file=sys.stdout)
    summary = f"scored {len(files) - failed} of {len(files)} files"
    print(f"rawguard score: {summary}" + (f", {failed} failed" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _onnx_model(args: argparse.Namespace, detector):
    from rawguard.onnx_backend import onnx_model

    if not str(detector.device).startswith("cpu"):
        raise ValueError(f"--backend onnx runs on the CPU; got --device {args.device}")
    if len(args.checkpoint) > 1:
        raise ValueError("--backend onnx scores one checkpoint; an ensemble runs on the torch backend")
    return onnx_model(args.checkpoint[0], detector.model, args.onnx, args.threads)


def _rank_device(device: str) -> str:
    """``cuda`` under torchrun means this rank's GPU (``cuda:<LOCAL_RANK>``)."""
    from rawguard.archive.run import rank_info

    ranks = rank_info()
    return f"cuda:{ranks.local_rank}" if device == "cuda" and ranks.world_size > 1 else device


def _run_archive(args: argparse.Namespace, detector) -> int:
    """``--out``: resumable, decode-parallel scoring into JSON Lines (rawguard.archive)."""
    from rawguard.archive import DecoderCrashed, JournalError, default_decoders, run_archive
    from rawguard.archive.run import rank_info
    from rawguard.progress import progress_bar
    from rawguard.scoring import ScoringError

    ranks = rank_info()
    progress = progress_bar(desc="scoring", unit="file", file=sys.stderr, disable=None if ranks.rank == 0 else True)
    try:
        run = run_archive(
            args.paths, args.out, detector.scorer(), lambda scored, path: detector.result(scored, path).to_dict(),
            workers=args.workers or default_decoders(), ranks=ranks,
            dist_backend="nccl" if detector.device.startswith("cuda") else "gloo", on_file=progress.update,
        )
    except (OSError, ValueError, JournalError, DecoderCrashed, ScoringError) as error:
        progress.close()
        print(f"rawguard score: error: {error}", file=sys.stderr)
        return 2
    progress.close()
    summary = run.summary
    where = f"rank {ranks.rank}: " if ranks.world_size > 1 else ""
    print(
        f"rawguard score: {where}scored {summary.scored} files ({summary.audio_seconds / 3600:.2f} h of audio) in "
        f"{summary.wall_seconds:.1f} s, {summary.failed} failed, {summary.skipped_done} already done; "
        f"results in {run.journal}",
        file=sys.stderr,
    )
    if run.dropped_lines or run.torn_bytes:
        print(f"rawguard score: {where}resumed: cut {run.torn_bytes} bytes of torn last lines, dropped "
              f"{run.dropped_lines} unfinished or outdated lines (their files were scored again)", file=sys.stderr)
    if run.merged is not None:
        print(f"rawguard score: merged {run.merged[0]} results and {run.merged[1]} errors into {run.merged_path}",
              file=sys.stderr)
    return 1 if summary.failed else 0
