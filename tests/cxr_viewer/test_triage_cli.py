"""``cxr-triage``: headless batch triage to CSV, with real files and real forward passes."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.checkpoints import write_tiny_checkpoint

from cxr_viewer.batch import collect_files, csv_header, triage_files, write_csv
from cxr_viewer.cli.triage import main
from cxr_viewer.core.io import load_image
from cxr_viewer.core.network_input import network_input
from cxr_viewer.inference import rank_findings

torch = pytest.importorskip("torch")
cral_model = pytest.importorskip("cral_model")
from cral_model.data.dataset import load_image as training_load_image  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    # non-trivial batch-norm statistics, so images get different scores
    return write_tiny_checkpoint(tmp_path_factory.mktemp("triage") / "m.safetensors", warm_up_batch=8)


@pytest.fixture
def study_dir(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "studies"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(5):
        grad = np.linspace(0, 255, 90 + 10 * i)[None, :] * np.ones((80, 1))
        noise = rng.integers(0, 60, grad.shape)
        img = np.clip(grad * (0.3 + 0.15 * i) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / ("sub" if i == 4 else ".") / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    (folder / "README.txt").write_text("notes, not an image")
    return folder


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_folder_to_csv_matches_the_predictor(checkpoint, study_dir, tmp_path, capsys) -> None:
    out = tmp_path / "results.csv"
    code = main(
        [str(study_dir), "-o", str(out), "--model", str(checkpoint), "--no-fast", "--batch-size", "2"]
    )
    assert code == 0
    rows = _read(out)
    names = cral_model.CLASS_NAMES
    assert list(rows[0].keys()) == csv_header(names)
    # README.txt inside the folder is not a study; the broken PNG is, with its reason
    assert sorted(Path(r["file"]).name for r in rows) == ["broken.png", *(f"img{i}.png" for i in range(5))]
    ok = [r for r in rows if not r["error"]]
    bad = [r for r in rows if r["error"]]
    assert len(ok) == 5
    assert [Path(r["file"]).name for r in bad] == ["broken.png"]
    assert bad[0]["error"].startswith("cannot decode PNG")
    assert bad[0]["triage_score"] == ""
    assert bad[0]["top8"] == ""
    assert rows[-1] is bad[0]  # error rows come last
    scores = [float(r["triage_score"]) for r in ok]
    assert scores == sorted(scores, reverse=True)
    predictor = cral_model.Predictor.from_checkpoint(checkpoint, device="cpu")
    for r in ok:
        # the input contract: cxr-triage scores a PNG exactly as the Predictor fed the uint8 array that
        # the training loader reads
        pred = predictor.predict(training_load_image(r["file"]))
        probs = np.array([float(r[f"prob_{n}"]) for n in names])
        np.testing.assert_allclose(probs, pred.probabilities, atol=2e-6)
        assert float(r["triage_score"]) == pytest.approx(pred.triage_score(), abs=2e-6)
        ranked = rank_findings(pred.probabilities, names, pred.thresholds, top_k=None)
        top8 = [item.split(":") for item in r["top8"].split(";")]
        assert [n for n, _ in top8] == [f.name for f in ranked[:8]]  # triage order: the driver first
        assert (r["flags"].split(";") if r["flags"] else []) == [f.name for f in ranked if f.above_threshold]
        assert sorted(r["flags"].split(";") if r["flags"] else []) == sorted(pred.flagged())
    assert "5 analysed" in capsys.readouterr().err


def test_batching_and_decode_threads_do_not_change_results(checkpoint, study_dir) -> None:
    predictor = cral_model.Predictor.from_checkpoint(checkpoint, device="cpu")
    files = collect_files([study_dir, study_dir / "img0.png"])  # named twice: listed once
    assert len(files) == 6
    seen: list[int] = []
    ref = triage_files(files, predictor, batch_size=1, workers=0, on_progress=seen.append)
    assert sum(seen) == 6
    for batch_size, workers in [(4, 2), (16, 3)]:
        rows = triage_files(files, predictor, batch_size=batch_size, workers=workers)
        assert [r.file for r in rows] == [r.file for r in ref]
        for a, b in zip(rows, ref, strict=True):
            assert a.error == b.error
            if a.probabilities is not None:
                np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_a_failing_batch_only_fails_its_bad_file(checkpoint, study_dir) -> None:
    real = cral_model.Predictor.from_checkpoint(checkpoint, device="cpu")
    poison = real.prepare(network_input(load_image(study_dir / "img0.png")))

    class Picky:
        class_names = real.class_names
        thresholds = real.thresholds
        prepare = staticmethod(real.prepare)

        @staticmethod
        def predict_prepared(batch):
            if any(torch.equal(x, poison) for x in batch):
                raise RuntimeError("simulated failure")
            return real.predict_prepared(batch)

    files = collect_files([study_dir])
    rows = triage_files(files, Picky(), batch_size=8, workers=1)
    errors = {Path(r.file).name: r.error for r in rows if r.error}
    assert errors.keys() == {"broken.png", "img0.png"}
    assert errors["img0.png"] == "analysis failed: RuntimeError: simulated failure"
    assert sum(1 for r in rows if not r.error) == 4


def test_named_non_image_and_missing_files_are_error_rows(checkpoint, tmp_path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("hello")
    out = tmp_path / "r.csv"
    assert (
        main(
            [
                str(note),
                str(tmp_path / "gone.dcm"),
                "-o",
                str(out),
                "--model",
                str(checkpoint),
                "--no-fast",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = _read(out)
    assert {Path(r["file"]).name: r["error"] for r in rows} == {
        "note.txt": "not an image (unrecognised file type)",
        "gone.dcm": "does not exist",
    }


def test_it_cannot_run_without_a_usable_model_or_output(checkpoint, study_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("cxr_viewer.cli.triage.default_model_path", lambda: None)
    assert main([str(study_dir), "-o", str(tmp_path / "a.csv")]) == 1
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    assert main([str(study_dir), "-o", str(tmp_path / "a.csv"), "--model", str(bad)]) == 1
    assert not (tmp_path / "a.csv").exists()
    out = tmp_path / "no-such-dir" / "a.csv"
    assert (
        main([str(study_dir), "-o", str(out), "--model", str(checkpoint), "--no-fast", "--no-progress"]) == 1
    )
    with pytest.raises(SystemExit) as exc:
        main([str(study_dir), "-o", str(tmp_path / "a.csv"), "--batch-size", "0"])
    assert exc.value.code == 2


def test_write_csv_to_a_stream_leaves_error_cells_empty() -> None:
    from cxr_viewer.batch import TriageRow

    buf = io.StringIO()
    write_csv([TriageRow("x.png", "does not exist")], ("A", "B"), buf)
    assert buf.getvalue().splitlines() == [
        "file,error,triage_score,prob_A,prob_B,flags,top8,warning",
        "x.png,does not exist,,,,,,",
    ]


@pytest.mark.slow
def test_fast_path_gives_the_same_ranking(checkpoint, study_dir, tmp_path, monkeypatch) -> None:
    from cral_model import fast as fastpath

    if not fastpath.fast_path_available():
        pytest.skip("onnxruntime/onnx not installed")
    monkeypatch.setenv("CXR_TRIAGE_CACHE", str(tmp_path / "cache"))
    eager, fast = tmp_path / "eager.csv", tmp_path / "fast.csv"
    base = [str(study_dir), "--model", str(checkpoint), "--no-progress"]
    assert main([*base, "-o", str(eager), "--no-fast"]) == 0
    assert main([*base, "-o", str(fast), "--fast"]) == 0
    a, b = _read(eager), _read(fast)
    assert [r["file"] for r in a] == [r["file"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["top8"].split(";")[0].split(":")[0] == rb["top8"].split(";")[0].split(":")[0]
        for n in cral_model.CLASS_NAMES:
            if ra["error"]:
                assert ra[f"prob_{n}"] == rb[f"prob_{n}"] == ""
            else:
                assert float(ra[f"prob_{n}"]) == pytest.approx(float(rb[f"prob_{n}"]), abs=1e-4)


@pytest.mark.slow
def test_console_script_on_real_files(checkpoint, tmp_path, shared_data) -> None:
    dicom = shared_data("dicom")
    fullres = shared_data("chestxray14-fullres-samples", "images")
    pngs = sorted(fullres.glob("*.png"))[:3]
    out = tmp_path / "real.csv"
    cmd = [
        sys.executable,
        "-m",
        "cxr_viewer.cli.triage",
        str(dicom),
        *map(str, pngs),
        "-o",
        str(out),
        "--model",
        str(checkpoint),
        "--no-fast",
        "--workers",
        "2",
        "--batch-size",
        "4",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = _read(out)
    n_dicom = len(list(dicom.glob("*.dcm")))
    assert len(rows) == n_dicom + len(pngs)  # the licence file inside the folder is not a study
    ok = [r for r in rows if not r["error"]]
    assert len(ok) >= len(pngs) + 1
    for r in ok:
        probs = [float(r[f"prob_{n}"]) for n in cral_model.CLASS_NAMES]
        assert all(0.0 <= p <= 1.0 for p in probs)
        assert len(r["top8"].split(";")) == 8


def test_fast_switches(monkeypatch) -> None:
    from cxr_viewer.__main__ import get_parser as viewer_parser
    from cxr_viewer.cli.triage import get_parser as triage_parser
    from cxr_viewer.inference import FAST_ENV, fast_mode

    monkeypatch.delenv(FAST_ENV, raising=False)
    assert fast_mode(None) == "auto"
    assert fast_mode(True) == "auto"
    assert fast_mode(False) == "off"
    monkeypatch.setenv(FAST_ENV, "off")
    assert fast_mode(None) == "off"
    assert fast_mode(True) == "auto"  # an explicit --fast wins over the environment
    monkeypatch.setenv(FAST_ENV, "int8")
    assert fast_mode(None) == "int8"
    assert viewer_parser().parse_args(["--no-fast"]).fast is False
    assert viewer_parser().parse_args([]).fast is None
    assert triage_parser().parse_args(["x", "-o", "y", "--no-fast"]).fast is False


@pytest.mark.slow
def test_ctrl_c_exits_cleanly_without_traceback(checkpoint, tmp_path) -> None:
    """SIGINT during the analysis: exit 130, one line on stderr, no traceback, no half-written CSV."""
    import signal

    from PIL import Image

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(2)
    # Enough work (several seconds even on a fast machine) that the signal lands during the analysis.
    for i in range(1500):
        Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    out = tmp_path / "out.csv"
    cmd = [sys.executable, "-m", "cxr_viewer.cli.triage", str(folder), "-o", str(out), "--model",
           str(checkpoint), "--no-fast", "--batch-size", "2", "--threads", "1", "--no-progress"]  # fmt: skip
    # A shell's background jobs (CI runners, nohup) inherit SIGINT as "ignored", and Python then never
    # raises KeyboardInterrupt: give the child the default disposition, as an interactive terminal would.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "model ... loaded": the analysis starts now
    assert "loaded" in first, first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err
    assert not out.exists() and not list(tmp_path.glob("out.csv*"))


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height grey pixels, with no image data behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_oversized_images_are_refused_quietly(checkpoint, tmp_path) -> None:
    """100 million declared pixels: refused from the header with our reason, and Pillow's own
    DecompressionBombWarning (raised at 89 million) does not reach stderr."""
    big = _png_declaring(tmp_path / "big.png", 10_000, 10_000)
    out = tmp_path / "big.csv"
    cmd = [
        sys.executable,
        "-m",
        "cxr_viewer.cli.triage",
        str(big),
        "-o",
        str(out),
        "--model",
        str(checkpoint),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "default"}
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = _read(out)
    assert "too large" in row["error"] and "10000 x 10000" in row["error"]
    assert "exceeds limit" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr


def test_studies_outside_the_model_scope_go_last_with_their_reason(
    checkpoint, shared_data, tmp_path, capsys
) -> None:
    """The NEMA hip (RG2) and extremity (RG3) CRs are scored but listed after the chest studies, whatever
    their score, with the header's reason in ``warning``; the chest CR and an NIH PNG have none."""
    dicom = shared_data("dicom")
    png = sorted(shared_data("chestxray14-fullres-samples", "images").glob("*.png"))[0]
    files = [dicom / "RG2_JPLL.dcm", dicom / "RG1_UNCI.dcm", dicom / "RG3_UNCR.dcm", png]
    out = tmp_path / "scope.csv"
    assert main([*map(str, files), "-o", str(out), "--model", str(checkpoint), "--no-fast"]) == 0
    assert "2 not chest per header (listed last)" in capsys.readouterr().err
    rows = _read(out)
    assert list(rows[0].keys())[-1] == "warning"
    by_name = {Path(r["file"]).name: r for r in rows}
    assert by_name["RG1_UNCI.dcm"]["warning"] == "" and by_name[png.name]["warning"] == ""
    assert by_name["RG2_JPLL.dcm"]["warning"].startswith("body part HIP")
    assert by_name["RG3_UNCR.dcm"]["warning"].startswith("body part EXTREMITY")
    assert all(r["error"] == "" and r["triage_score"] for r in rows)  # still analysed and scored
    warned = [bool(r["warning"]) for r in rows]
    assert warned == [False, False, True, True]  # in-scope first
    for group in (rows[:2], rows[2:]):
        scores = [float(r["triage_score"]) for r in group]
        assert scores == sorted(scores, reverse=True)
