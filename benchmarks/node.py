"""``python -m benchmarks.node``: the DICOM node (``cxr-triage serve``, issue 14) against a real Orthanc.

Starts a test Orthanc (`tests/helpers/orthanc.py`: loopback, temporary storage, DICOMweb plugin) and the
node as its own process (``python -m cxr_viewer.cli.triage serve``, results to that Orthanc), then
measures:

1. **throughput**: ``N`` instances (RG1's header and every 8th pixel, 245 x 231, new UIDs; spread over
   studies) sent from ``A`` concurrent associations; reported: instances per second acknowledged by
   the node (receiving alone), and instances per second *through* the node: from the first C-STORE to
   the last result (SR + SC of every instance) stored in Orthanc, with and without the quiet period a
   study waits before its triage (``--quiet-seconds``, counted once: the studies wait side by side);
2. **latency**: a full-size RG1 film (1955 x 1841, 7 MB) alone in a new study, sent when the node is
   idle: seconds from its acknowledgement to its SR stored in Orthanc (polled every 50 ms), and the same
   minus the quiet period.

Figures depend on the machine and its load (the node, Orthanc and this script share its cores); the
table says how many CPUs it had. Reports only; asserts nothing. Without Orthanc or the shared data it
prints why and measures nothing (exit status 0).

Usage: ``python -m benchmarks.node [--quick] [--checkpoint CKPT] [--instances 200] [--associations 4]``
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import DICOM, ROOT, table

NODE_AET = "BENCHNODE"
SCU_AET = "BENCHSCU"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.node", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20 instances, 2 studies, 1 latency run")
    p.add_argument("--checkpoint", help="model (default: the bundled demo model, else a tiny random one)")
    p.add_argument("--instances", type=int, default=None, help="instances for throughput (default 200)")
    p.add_argument("--studies", type=int, default=None, help="studies they are spread over (default 8)")
    p.add_argument("--associations", type=int, default=4, help="concurrent associations (default 4)")
    p.add_argument("--quiet-seconds", type=float, default=1.0, help="the node's --quiet-seconds")
    p.add_argument("--repeats", type=int, default=None, help="latency runs (default 3, quick 1)")
    p.add_argument("--threads", type=int, default=1, help="the node's model threads (default 1)")
    p.add_argument(
        "--fast", action=argparse.BooleanOptionalAction, default=False, help="the node's ONNX fast path"
    )
    return p


def _instances(rg1: Path, n: int, studies: int, step: int = 8) -> list[Any]:
    """``n`` real CR instances from RG1 (every ``step``-th pixel), new UIDs, over ``studies`` studies."""
    import numpy as np
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = pydicom.dcmread(rg1)
    px = np.ascontiguousarray(src.pixel_array[::step, ::step]).astype(np.uint16)
    del src.PixelData
    study_uids = [generate_uid() for _ in range(studies)]
    out = []
    for i in range(n):
        ds = copy.deepcopy(src)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study_uids[i % studies]
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[study_uids[i % studies]])
        ds.Rows, ds.Columns = px.shape
        ds.PixelData = px.tobytes()
        ds["PixelData"].VR = "OW"
        out.append(ds)
    return out


def _store(port: int, datasets: list[Any], on_ack: Any = None) -> list[int]:
    """C-STORE ``datasets`` on one association; their statuses (-1: no response)."""
    from pynetdicom import AE

    ae = AE(SCU_AET)
    for sop_class, ts in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(sop_class, [ts])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    if not assoc.is_established:
        raise ConnectionError("the node refused the association")
    out = []
    try:
        for d in datasets:
            status = assoc.send_c_store(d)
            code = int(status.Status) if "Status" in status else -1
            out.append(code)
            if on_ack is not None and code == 0:
                on_ack()
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def _start_node(orthanc: Any, spool: Path, ckpt: Path, args: argparse.Namespace) -> tuple[Any, int, Path]:
    from helpers.orthanc import free_port

    port = free_port()
    log = spool.parent / "node.log"
    cmd = [sys.executable, "-m", "cxr_viewer.cli.triage", "serve", "--ae-title", NODE_AET]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--accept", SCU_AET, "--spool", str(spool)]
    cmd += ["--destination", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}", "--model", str(ckpt)]
    cmd += ["--quiet-seconds", str(args.quiet_seconds), "--threads", str(args.threads)]
    cmd += ["--fast" if args.fast else "--no-fast", "--log-level", "INFO"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while "listening as" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the node did not start:\n" + log.read_text(errors="replace")[-2000:])
        time.sleep(0.1)
    return proc, port, log


def _sr_count(orthanc: Any) -> int:
    return len(orthanc.instances_by_modality().get("SR", []))


def _wait(pred: Any, timeout: float, poll: float = 0.05) -> float:
    """Poll ``pred()`` until true; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout:.0f} s")
        time.sleep(poll)
    return time.monotonic()


def run(args: argparse.Namespace, out: Any, heading: str = "## DICOM node") -> dict[str, Any]:
    """Measure and print the table; returns the figures ({} when nothing could be measured)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.orthanc import orthanc_missing, start_orthanc

    n = args.instances or (20 if args.quick else 200)
    studies = args.studies or (2 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 3)
    rg1 = (DICOM / "RG1_UNCR.dcm").resolve()
    missing = orthanc_missing() or ("" if rg1.exists() else f"no {rg1} (shared data absent)")
    out.write(f"{heading}\n\n")
    if missing:
        out.write(f"not measured: {missing}\n\n")
        return {}
    work = Path(tempfile.mkdtemp(prefix="cxr-bench-node-"))
    ckpt = Path(args.checkpoint) if args.checkpoint else _checkpoint(work)
    orthanc = start_orthanc(work / "orthanc")
    proc = None
    try:
        proc, port, _ = _start_node(orthanc, work / "spool", ckpt, args)
        datasets = _instances(rg1, n, studies)
        chunks = [datasets[i :: args.associations] for i in range(args.associations)]
        acks = []
        lock = threading.Lock()

        def on_ack() -> None:
            with lock:
                acks.append(time.monotonic())

        t0 = time.monotonic()
        with ThreadPoolExecutor(args.associations) as pool:
            statuses = [s for r in pool.map(lambda c: _store(port, c, on_ack), chunks) for s in r]
        t_sent = time.monotonic()
        ok = sum(1 for s in statuses if s == 0)
        t_done = _wait(lambda: _sr_count(orthanc) >= ok and len(orthanc.instances()) >= 2 * ok, 3600, 0.25)
        through = t_done - t0
        res: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "checkpoint": ckpt.name,
            "instances": n,
            "acknowledged": ok,
            "associations": args.associations,
            "studies": studies,
            "quiet_seconds": args.quiet_seconds,
            "receive_instances_per_s": ok / (t_sent - t0),
            "through_instances_per_s": ok / through,
            "through_instances_per_s_without_quiet": ok / max(1e-9, through - args.quiet_seconds),
        }
        # latency: one full-size film alone, the node idle
        film = _instances_full(rg1, repeats)
        lat = []
        for ds in film:
            before = _sr_count(orthanc)
            acked: list[float] = []
            _store(port, [ds], lambda acked=acked: acked.append(time.monotonic()))
            t_sr = _wait(lambda b=before: _sr_count(orthanc) > b, 600)
            lat.append(t_sr - acked[0])
        res["last_instance_to_sr_s"] = statistics.median(lat)
        res["last_instance_to_sr_s_without_quiet"] = statistics.median(lat) - args.quiet_seconds
        per_s = "instances/s"
        rows = [
            ["instances acknowledged", f"{ok} of {n} ({studies} studies, {args.associations} associations)"],
            ["receive rate (C-STORE acknowledged)", f"{res['receive_instances_per_s']:.1f} {per_s}"],
            ["through the node (first C-STORE -> last SR+SC in Orthanc)",
             f"{res['through_instances_per_s']:.2f} {per_s}"],
            ["  the same, quiet period taken out",
             f"{res['through_instances_per_s_without_quiet']:.2f} {per_s}"],
            [f"last instance -> SR in Orthanc (RG1 1955 x 1841, median of {repeats})",
             f"{res['last_instance_to_sr_s']:.2f} s"],
            ["  the same, quiet period taken out", f"{res['last_instance_to_sr_s_without_quiet']:.2f} s"],
        ]  # fmt: skip
        backend = "ONNX" if args.fast else "eager"
        out.write(
            f"{os.cpu_count()} logical CPUs; model {ckpt.name} on the CPU ({backend}, {args.threads} "
            f"thread); quiet period {args.quiet_seconds:g} s; node, Orthanc and sender on one machine\n\n"
        )
        out.write(table(rows, ["what", "figure"]) + "\n\n")
        out.flush()
        return res
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
            if proc.poll() is None:
                proc.kill()
        orthanc.stop()


def _instances_full(rg1: Path, k: int) -> list[Any]:
    """``k`` copies of the full RG1 film, each in a new study."""
    return _instances(rg1, k, k, step=1)


def _checkpoint(work: Path) -> Path:
    """The bundled demo model, else a tiny random CRAL (64 px) written to ``work``."""
    from cxr_viewer.inference import default_model_path

    path = default_model_path()
    if path is not None and path.exists():
        return path
    from helpers.checkpoints import write_tiny_checkpoint

    return write_tiny_checkpoint(work / "tiny.safetensors", warm_up_batch=8)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run(args, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
