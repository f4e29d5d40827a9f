"""``cxr-triage serve``: a DICOM node that triages what the PACS or a modality sends it.

Usage::

    cxr-triage serve --ae-title CXRTRIAGE --port 11112 --accept PACS MODALITY1 \\
        --destination PACS@pacs.example.org:104 --spool /var/lib/cxr-triage [--quiet-seconds 5]
        [--model CHECKPOINT] [--device auto] [--fast | --no-fast] [--threads N] [--batch-size 16]
        [--workers 2] [--send-attempts 5] [--retry-seconds 2] [--retry-max-seconds 300]
        [--max-associations 10] [--host 0.0.0.0] [--log-level INFO]

It stores every instance it is sent in the spool folder (fsynced, recorded in its journal) before it
acknowledges it, triages a study once no instance of it came for ``--quiet-seconds``, and sends a DICOM
SR and a Secondary Capture per analysed image to ``--destination``. One status line per study on
stderr, without patient data. SIGTERM or Ctrl-C stops it cleanly; a restart goes on where it stopped.

Exit status: 0 after a clean stop; 1 when it cannot start (no model, a model that does not load, a port
that cannot be bound, a spool that cannot be written); 2 for bad arguments.

Research use only, not for diagnosis.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_viewer import __version__
from cxr_viewer.batch import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from cxr_viewer.core.io import quiet_decoder_output
from cxr_viewer.core.reasons import message_of
from cxr_viewer.inference import NOT_FOR_CLINICAL_USE, default_model_path, fast_mode, load_predictor
from cxr_viewer.node import DicomNode, NodeConfig, parse_destination

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["config_from_args", "get_parser", "main"]

log = logging.getLogger("cxr_viewer.node")


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``cxr-triage serve``."""
    p = argparse.ArgumentParser(
        prog="cxr-triage serve",
        description="DICOM node: Storage SCP that triages chest X-rays and sends SR + SC results "
        "(research demonstration, not for clinical use).",
    )
    p.add_argument("--ae-title", default="CXRTRIAGE", help="the node's AE title (default: %(default)s)")
    p.add_argument("--port", type=int, default=11112, help="TCP port to listen on (default: %(default)s)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    p.add_argument(
        "--accept",
        nargs="+",
        default=[],
        metavar="AET",
        help="calling AE titles allowed to send; every other is refused at association",
    )
    p.add_argument("--accept-any", action="store_true", help="accept any calling AE title (not advised)")
    p.add_argument(
        "--destination", required=True, metavar="AET@HOST:PORT", help="where the SR and SC are sent (C-STORE)"
    )
    p.add_argument("--spool", required=True, type=Path, metavar="FOLDER", help="spool and journal folder")
    p.add_argument(
        "--quiet-seconds",
        type=float,
        default=5.0,
        help="triage a study once no instance of it came for this long (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        metavar="CHECKPOINT",
        help="a cral-train checkpoint (*.safetensors); default: $CXR_TRIAGE_MODEL or the bundled demo model",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda... (default: %(default)s)")
    p.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CPU fast path (ONNX Runtime) when available (default: on, unless $CXR_TRIAGE_FAST=off)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: all cores)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per forward pass")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="decoding threads (0: inline)")
    p.add_argument("--send-attempts", type=int, default=5, help="C-STORE attempts before dead-letter")
    p.add_argument("--retry-seconds", type=float, default=2.0, help="first retry delay; doubles after each")
    p.add_argument("--retry-max-seconds", type=float, default=300.0, help="longest retry delay")
    p.add_argument("--max-associations", type=int, default=10, help="concurrent associations accepted")
    p.add_argument("--network-timeout", type=float, default=60.0, help="seconds of silence before a drop")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def config_from_args(args: argparse.Namespace, model: Path) -> NodeConfig:
    """The `NodeConfig` for parsed arguments (one field per flag).

    Raises:
        ValueError: for values the configuration refuses (the message says which).
    """
    return NodeConfig(
        ae_title=args.ae_title,
        port=args.port,
        host=args.host,
        accepted_calling=tuple(args.accept),
        accept_any_calling=args.accept_any,
        spool_dir=args.spool,
        destination=parse_destination(args.destination),
        quiet_seconds=args.quiet_seconds,
        model=model,
        device=args.device,
        fast=fast_mode(args.fast),
        batch_size=args.batch_size,
        workers=args.workers,
        send_attempts=args.send_attempts,
        retry_seconds=args.retry_seconds,
        retry_max_seconds=args.retry_max_seconds,
        max_associations=args.max_associations,
        network_timeout=args.network_timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node until SIGTERM / Ctrl-C. Returns the exit status (see the module docstring)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    model = args.model or default_model_path()
    if model is None:
        sys.stderr.write("cxr-triage serve: no model: pass --model CHECKPOINT or set $CXR_TRIAGE_MODEL\n")
        return 1
    try:
        config = config_from_args(args, Path(model))
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO/DEBUG lines dump headers
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # INFO: a line per copied module, with UIDs
    quiet_decoder_output()  # no header values (patient data) from the decoders on stderr

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.threads:
            import torch

            torch.set_num_threads(max(1, args.threads))
        t0 = time.perf_counter()
        try:
            predictor = load_predictor(config.model, device=config.device, fast=config.fast)
        except Exception as exc:
            sys.stderr.write(f"cxr-triage serve: cannot load model {config.model.name}: {message_of(exc)}\n")
            return 1
        log.info(
            "model %s on %s (%s), loaded in %.1f s. %s",
            config.model.name,
            predictor.device,
            predictor.backend,
            time.perf_counter() - t0,
            NOT_FOR_CLINICAL_USE,
        )
        try:
            node = DicomNode(config, predictor)
            node.start()
        except OSError as exc:
            sys.stderr.write(f"cxr-triage serve: cannot start: {message_of(exc)}\n")
            return 1
        try:
            while not stop.wait(0.5):
                pass
        finally:
            log.info("stopping")
            node.stop()
        return 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


if __name__ == "__main__":
    raise SystemExit(main())
