"""``python -m benchmarks``: the performance suite of issue 6; prints a table and optionally writes JSON.

Measures, each side by side in one process (or one run) on this machine:

1. latency: one file -> findings and maps (``load_image`` + ``Predictor.predict``) vs the bare torchvision
   backbone's forward on the same preprocessed input;
2. throughput: ``cxr_viewer.batch.triage_files`` over a folder vs the bare backbone on batches;
3. fast path: every CPU inference option vs eager fp32 (speed, max |probability difference|, top-8 order);
4. GUI: seconds from launch to the shown window, and the longest event-loop stall during analysis;
5. training: one CRAL training step vs one bare-backbone step (same batch, input, device);
6. memory: peak RSS of the real ``cxr-triage`` on hostile files, each beside a good PNG
   (`benchmarks.memory`; ``--quick`` runs three of the cases);
7. input pipeline: training items per core from 1024 px PNGs vs the ``cral-prepare`` cache vs tar
   shards, and the cores per GPU (`benchmarks.input_pipeline`; ``--quick``: 6 images x 2 rounds);
8. DICOM node: instances per second through ``cxr-triage serve`` into a real Orthanc, and seconds from
   the last instance to its SR in Orthanc (`benchmarks.node`; ``--quick``: 20 instances, 1 film).

It reports; it does not assert times (CI runs ``--quick`` on whatever machine it gets). Exit status is
non-zero only when something crashed.

Usage: ``python -m benchmarks [--quick] [--json PATH] [--checkpoint CKPT] [--skip gui train ...]``
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    FULLRES,
    NIH64,
    Timing,
    bare_backbone,
    ensure_checkpoint,
    fmt_ms,
    real_images,
    synthetic_images,
    table,
)

SECTIONS = ("latency", "throughput", "fastpath", "gui", "train", "memory", "input", "node")
JSON_KEYS = (
    "latency_ratio_vs_backbone",
    "triage_throughput_ratio",
    "fast_path_speedup",
    "fast_path_max_abs_diff",
    "gui_max_stall_ms",
    "startup_s",
    "train_step_ratio",
    "input_cache_speedup_vs_png",
)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short CI run (a few repeats, small inputs)")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument(
        "--checkpoint", help="checkpoint to measure (default: the bundled demo model, else a built one)"
    )
    p.add_argument("--backbone", default="resnet18", help="for a built checkpoint (default: resnet18)")
    p.add_argument("--attention", default="att1")
    p.add_argument("--input-size", type=int, default=128, help="for a built checkpoint (default: 128)")
    p.add_argument("--base-size", type=int, default=64, help="for a built checkpoint (default: 64; 0: none)")
    p.add_argument(
        "--repeats", type=int, default=None, help="timed calls per measurement (default 5 quick, 20)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--images", type=int, default=None, help="images for throughput (default 48 quick, 256)")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections to leave out")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--probe-runs",
        type=int,
        default=None,
        help="viewer launches (and 2 x stall runs) (default 3 quick, 7)",
    )
    return p


def _stats_row(label: str, t: Timing, ref: Timing | None, unit_ms: bool = True) -> list[str]:
    f = fmt_ms if unit_ms else (lambda s: f"{s:.3f}")
    ratio = f"{t.median / ref.median:.3f}" if ref is not None and ref.median > 0 else "1 (ref)"
    return [label, f(t.median), f(t.min), f(t.max), ratio]


def run(args: argparse.Namespace, out: Any) -> dict[str, Any]:
    import torch

    import cral_model
    from cxr_viewer.inference import load_predictor

    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    repeats = args.repeats or (4 if quick else 20)
    n_images = args.images or (48 if quick else 256)
    work = Path(tempfile.mkdtemp(prefix="cxr-bench-"))
    cache = Path(os.environ.get("CXR_TRIAGE_CACHE") or work / "cache")
    os.environ["CXR_TRIAGE_CACHE"] = str(cache)
    ckpt, origin = ensure_checkpoint(
        args.checkpoint,
        work,
        backbone=args.backbone,
        attention=args.attention,
        input_size=args.input_size,
        base_size=args.base_size or None,
    )
    eager = load_predictor(ckpt, device="cpu", fast="off")
    t0 = time.perf_counter()
    fast = load_predictor(ckpt, device="cpu", fast="auto")
    fast_setup = time.perf_counter() - t0
    cfg = eager.model.config
    pre = eager.preprocessing
    bare = bare_backbone(cfg.backbone, like=eager.model)
    nih = real_images(NIH64)
    fullres = real_images(FULLRES)
    data_note = "real NIH images" if nih else "synthetic images (../shared/data absent)"
    if not nih:
        nih = synthetic_images(work / "synthetic", max(n_images, 64), size=64)
    if not fullres:
        fullres = synthetic_images(work / "synthetic_fullres", 4, size=1024)
    res: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} logical CPUs".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "checkpoint": f"{ckpt.name} ({origin}): {cfg.backbone} {cfg.attention} {cfg.mode}, "
        f"input {pre.input_size}" + (f", base_size {pre.base_size}" if pre.base_size else ""),
        "fast_backend": fast.backend,
        "fast_setup_s": fast_setup,
        "data": data_note,
        "quick": quick,
        "section_s": {"setup": time.perf_counter() - t_start},
    }
    out.write(
        f"# cxr-triage benchmarks ({'quick' if quick else 'full'})\n\n"
        f"machine: {res['machine']}; torch {res['torch']}, {res['threads']} threads; "
        f"checkpoint {res['checkpoint']}; fast path: {fast.backend} (set up in {fast_setup:.1f} s, "
        f"export cached in {cache}); data: {data_note}. Times in ms; ratio = median / median of the "
        "reference measured in the same run.\n\n"
    )
    predictors = {"file->findings, eager": eager, f"file->findings, fast ({fast.backend})": fast}
    skip = set(args.skip)

    _lap(res, "latency")
    if "latency" not in skip:
        rows = []
        for label, image in (("1024 px PNG", fullres[0]), ("64 px PNG", nih[0])):
            from benchmarks.pipeline import latency

            timings, shape = latency(predictors, bare, image, repeats)
            ref = timings["backbone"]
            rows.append(_stats_row(f"{label}: bare {cfg.backbone} forward {tuple(shape)}", ref, None))
            rows += [_stats_row(f"{label}: {k}", t, ref) for k, t in timings.items() if k != "backbone"]
            key = "fullres" if label.startswith("1024") else "64px"
            res[f"latency_{key}_ms"] = {k: 1e3 * t.median for k, t in timings.items()}
            res[f"latency_ratio_vs_backbone_eager_{key}"] = (
                timings["file->findings, eager"].median / ref.median
            )
            res[f"latency_ratio_vs_backbone_fast_{key}"] = (
                timings[next(k for k in timings if "fast" in k)].median / ref.median
            )
        res["latency_ratio_vs_backbone"] = res["latency_ratio_vs_backbone_fast_fullres"]
        out.write("## 1. Single image: file -> findings and maps (batch 1)\n\n")
        out.write(table(rows, ["what", "median", "min", "max", "ratio vs backbone"]) + "\n\n")
        out.flush()

    _lap(res, "throughput")
    if "throughput" not in skip:
        from benchmarks.pipeline import throughput

        files = nih[:n_images]
        timings = throughput(
            predictors, bare, files, batch_size=args.batch_size, workers=2, rounds=2 if quick else 3
        )
        ref = timings["backbone"]
        rows = []
        for k, t in timings.items():
            label = (
                f"bare {cfg.backbone}, batches of {args.batch_size}"
                if k == "backbone"
                else k.replace("file->findings", "cxr-triage pipeline")
            )
            ratio = "1 (ref)" if k == "backbone" else f"{ref.median / t.median:.3f}"
            rows.append([label, f"{1 / t.median:.1f}", f"{1 / t.max:.1f}", f"{1 / t.min:.1f}", ratio])
        res["triage_images_per_s"] = {k: 1 / t.median for k, t in timings.items()}
        fast_key = next(k for k in timings if "fast" in k)
        res["triage_throughput_ratio_eager"] = ref.median / timings["file->findings, eager"].median
        res["triage_throughput_ratio_fast"] = ref.median / timings[fast_key].median
        res["triage_throughput_ratio"] = res["triage_throughput_ratio_fast"]
        out.write(f"## 2. Batch triage of {len(files)} files (batch {args.batch_size}, 2 decode threads)\n\n")
        out.write(
            table(rows, ["what", "images/s (median)", "min", "max", "throughput ratio vs backbone"]) + "\n\n"
        )
        out.flush()

    _lap(res, "fastpath")
    if "fastpath" not in skip:
        from benchmarks.fastpath import compare
        from cral_model.preprocessing import preprocess
        from cxr_viewer.core.io import load_image
        from cxr_viewer.core.network_input import network_input

        n_eval = 32 if quick else 400
        eval_files = nih[:n_eval] + fullres[: (4 if quick else len(fullres))]
        calib_files = nih[-(16 if quick else 64) :]
        stack = lambda fs: torch.stack([preprocess(network_input(load_image(f)), pre) for f in fs])  # noqa: E731
        results = compare(
            eager.model,
            pre.input_size,
            stack(eval_files),
            stack(calib_files),
            repeats=repeats,
            full=not quick,
            cache=cache,
            weights_key=str(eager.metadata.get("weights_sha256") or "bench"),
        )
        ref = results["eager fp32 (reference)"]
        rows = []
        for name, r in results.items():
            if r.error:
                rows.append([name, "failed: " + r.error, "", "", "", "", ""])
                continue
            assert r.batch1 is not None
            assert r.batch16 is not None
            assert ref.batch1 is not None
            assert ref.batch16 is not None
            rows.append(
                [
                    name,
                    f"{fmt_ms(r.batch1.median)} ({fmt_ms(r.batch1.min)}-{fmt_ms(r.batch1.max)})",
                    f"{ref.batch1.median / r.batch1.median:.2f}",
                    f"{fmt_ms(r.batch16.median)}",
                    f"{ref.batch16.median / r.batch16.median:.2f}",
                    f"{r.max_abs_diff:.2e}",
                    f"{100 * r.top8_same:.0f}%",
                ]
            )
        chosen = "ONNX Runtime " + fast.backend.rsplit("-", 1)[-1] if fast.backend.startswith("onnx") else ""
        ch = results.get(chosen)
        if ch is not None and ch.batch1 is not None and ref.batch1 is not None:
            res["fast_path_speedup"] = ref.batch1.median / ch.batch1.median
            res["fast_path_speedup_batch16"] = (
                ref.batch16.median / ch.batch16.median if ch.batch16 and ref.batch16 else float("nan")
            )
            res["fast_path_max_abs_diff"] = ch.max_abs_diff
            res["fast_path_top8_same"] = ch.top8_same
        else:
            res["fast_path_speedup"] = float("nan")
            res["fast_path_max_abs_diff"] = float("nan")
        res["fast_path_options"] = {
            n: {
                "batch1_ms": 1e3 * r.batch1.median if r.batch1 else None,
                "batch16_ms_per_image": 1e3 * r.batch16.median if r.batch16 else None,
                "max_abs_diff": r.max_abs_diff,
                "top8_same": r.top8_same,
                "error": r.error,
            }
            for n, r in results.items()
        }
        out.write(
            f"## 3. CPU inference options ({len(eval_files)} real images for agreement; "
            f"int8 calibrated on {len(calib_files)} others)\n\n"
        )
        out.write(
            table(
                rows,
                [
                    "option",
                    "batch 1 median (min-max)",
                    "speed-up b1",
                    "batch 16 per image",
                    "speed-up b16",
                    "max |dp|",
                    "same top-8",
                ],
            )
            + "\n\n"
        )
        out.flush()

    _lap(res, "gui")
    if "gui" not in skip:
        from benchmarks.gui import stall_once, startup_once

        n_probe = args.probe_runs or (3 if quick else 7)
        starts = [startup_once(["--model", str(ckpt)]) for _ in range(n_probe)]
        start_s = [float(s["startup_s"]) for s in starts]
        torch_at_show = sum(bool(s["torch_at_show"]) for s in starts)
        gui_files = [str(f) for f in fullres[: (4 if quick else 12)]]
        stalls: dict[str, list[dict[str, Any]]] = {"auto": [], "off": []}
        for _ in range(max(1, (args.probe_runs or (2 if quick else 6)) // 2)):
            for mode in stalls:
                stalls[mode].append(stall_once(str(ckpt), mode, gui_files))
        rows = [
            [
                "launch -> window shown (s)",
                f"{statistics.median(start_s):.2f}",
                f"{min(start_s):.2f}",
                f"{max(start_s):.2f}",
                f"torch imported before the window was shown in {torch_at_show} of {n_probe} runs",
            ]
        ]
        for runs in stalls.values():
            mx = [float(r["max_stall_ms"]) for r in runs]
            p99 = statistics.median(float(r["p99_stall_ms"]) for r in runs)
            rows.append(
                [
                    f"longest GUI stall analysing {len(gui_files)} x 1024 px, {runs[0]['backend']} (ms)",
                    f"{statistics.median(mx):.1f}",
                    f"{min(mx):.1f}",
                    f"{max(mx):.1f}",
                    f"p99 gap {p99:.1f} ms; {runs[0]['analysed']}/{len(gui_files)} analysed",
                ]
            )
        res["startup_s"] = statistics.median(start_s)
        res["startup_torch_before_show"] = torch_at_show
        res["gui_max_stall_ms"] = statistics.median(float(r["max_stall_ms"]) for r in stalls["auto"])
        res["gui_max_stall_ms_eager"] = statistics.median(float(r["max_stall_ms"]) for r in stalls["off"])
        out.write(f"## 4. GUI (offscreen Qt; {n_probe} launches, stall runs interleaved)\n\n")
        out.write(table(rows, ["what", "median", "min", "max", "note"]) + "\n\n")
        out.flush()

    _lap(res, "train")
    if "train" not in skip:
        from benchmarks.train_speed import _Stepper

        size = 64 if quick else pre.input_size
        batch = 8 if quick else 16
        steps = 3 if quick else 7
        torch.manual_seed(0)
        x = torch.randn(batch, 3, size, size)
        y = (torch.rand(batch, 14) < 0.2).float()
        steppers = {
            "backbone": _Stepper(bare_backbone(cfg.backbone, like=eager.model).train(), x, y),
            "cral": _Stepper(cral_model.load_checkpoint(ckpt).model.train(), x, y),
        }
        for i in range(1 + steps):
            for st in steppers.values():
                st.step(record=i >= 1)
        tb = Timing("backbone", steppers["backbone"].times)
        tc = Timing("cral", steppers["cral"].times)
        res["train_step_ratio"] = tc.median / tb.median
        res["train_step_ms"] = {"backbone": 1e3 * tb.median, "cral": 1e3 * tc.median}
        rows = [
            _stats_row(f"bare {cfg.backbone} step", tb, None),
            _stats_row(f"CRAL {cfg.attention} {cfg.mode} step", tc, tb),
        ]
        out.write(
            f"## 5. Training step (forward + BCE + backward + SGD; batch {batch}, {size} px, CPU, "
            f"{steps} steps interleaved)\n\n"
        )
        out.write(table(rows, ["what", "median", "min", "max", "ratio vs backbone"]) + "\n\n")
        out.flush()

    _lap(res, "memory")
    if "memory" not in skip:
        from benchmarks.memory import run as memory_run

        mem = memory_run(ckpt, work / "memory", out, quick=quick, heading="## 6. Memory")
        res["memory"] = mem["cases"]
        res["memory_max_peak_rss_mb"] = mem["max_peak_rss_mb"]
        res["memory_cases_over_budget"] = mem["cases_over_budget"]
        res["memory_good_files_lost"] = mem["good_files_lost"]

    _lap(res, "input")
    if "input" not in skip:
        from benchmarks.input_pipeline import get_parser as input_parser
        from benchmarks.input_pipeline import run as input_run

        in_args = input_parser().parse_args(["--quick"] if quick else [])
        in_args.rounds, in_args.items = (2, 6) if quick else (7, 24)
        inp = input_run(in_args, out, heading="## 7. Input pipeline")
        res["input_pipeline"] = inp
        if inp:
            png, cache = inp["PNG 1024 px"], inp[f"cache ({in_args.size} px memmap)"]
            res["input_cache_speedup_vs_png"] = png["ms_per_item"] / cache["ms_per_item"]
        out.write("\n")
        out.flush()

    _lap(res, "node")
    if "node" not in skip:
        from benchmarks.node import get_parser as node_parser
        from benchmarks.node import run as node_run

        node_args = node_parser().parse_args(["--quick"] if quick else [])
        node_args.checkpoint = str(ckpt)
        res["node"] = node_run(node_args, out, heading="## 8. DICOM node (cxr-triage serve -> Orthanc)")
        out.flush()

    _lap(res, None)
    laps = ", ".join(f"{k} {v:.0f} s" for k, v in res["section_s"].items())
    summary = [[k, _fmt(res.get(k))] for k in JSON_KEYS]
    out.write("## Summary (JSON keys)\n\n" + table(summary, ["key", "value"]) + "\n")
    out.write(f"\nseconds per section: {laps}\n")
    return res


def _lap(res: dict[str, Any], section: str | None) -> None:
    """Close the running section's clock (kept in ``res["section_s"]``) and start ``section``'s."""
    now = time.perf_counter()
    running = res.pop("_lap", None)
    if running is not None:
        res.setdefault("section_s", {})[running[0]] = now - running[1]
    if section is not None:
        res["_lap"] = (section, now)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    return "n/a (skipped)" if v is None else str(v)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.perf_counter()
    res = run(args, sys.stdout)
    res["total_s"] = time.perf_counter() - t0
    sys.stdout.write(f"\n(benchmark run took {res['total_s']:.0f} s)\n")
    if args.json:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in res.items()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(clean, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
