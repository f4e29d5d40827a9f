"""``cxr-triage`` against hostile names and outputs (issue 18, items 3, 5, 6 and 7): real runs of the CLI
on crafted files in ``tmp_path`` with a tiny real checkpoint."""

from __future__ import annotations

import csv
import io
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.checkpoints import random_cral, write_tiny_checkpoint

from cxr_viewer.batch import TriageRow, collect_files, write_csv
from cxr_viewer.cli.triage import main
from cxr_viewer.core.io import FoundFile

pytest.importorskip("torch")
cral_model = pytest.importorskip("cral_model")

#: what OWASP's CSV-injection rule says a cell must not start with
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: a file name that is not UTF-8 (Python hands it over with a surrogate escape)
BAD_NAME = os.fsdecode(b"bad\xff\xfe.png")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("hostile") / "m.safetensors", warm_up_batch=4)


@pytest.fixture(scope="module")
def hostile_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint whose class names a spreadsheet would run as formulas; every class is flagged."""
    names = [
        '=HYPERLINK("http://example.invalid","x")',
        "+1+1",
        "-2+3",
        "@SUM(1)",
        "=1",
        "-Minus",
        *(f"Class{i}" for i in range(8)),  # tab and CR: checkpoints refuse unprintable names
    ]
    return cral_model.save_checkpoint(
        random_cral(warm_up_batch=4),
        tmp_path_factory.mktemp("hostile") / "formula.safetensors",
        preprocessing=cral_model.PreprocessConfig(input_size=64, resize=64),
        thresholds=[1e-6] * 14,
        class_names=names,
    )


def _png(path: Path, seed: int = 0, side: int = 160) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(path, format="PNG")
    return path


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def _args(checkpoint: Path, *paths: object) -> list[str]:
    return [*map(str, paths), "--model", str(checkpoint), "--no-fast", "--no-progress", "--workers", "0"]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.part"))


# -- item 3: file names are bytes ------------------------------------------------------------------


def test_a_non_utf8_file_name_gets_its_row_and_the_run_goes_on(checkpoint, tmp_path, capsys) -> None:
    """The name is written with its undecodable bytes as ``\\xNN`` (the CSV stays UTF-8), the good file
    beside it is analysed, and stderr (strict UTF-8 under capsys) takes the non-UTF-8 output name."""
    good = _png(tmp_path / "good.png")
    bad = _png(tmp_path / BAD_NAME, seed=1)
    odd = _png(tmp_path / 'cr\rlf\n,comma "quote".png', seed=2)  # one row still, the name intact
    out = tmp_path / os.fsdecode(b"out\xfd.csv")
    assert main([*_args(checkpoint, good, bad, odd), "-o", str(out)]) == 0
    rows = _rows(out.read_bytes())
    by_name = {Path(r["file"]).name: r for r in rows}
    assert by_name.keys() == {"good.png", "bad\\xff\\xfe.png", odd.name}
    assert all(r["error"] == "" and r["triage_score"] for r in rows)
    assert "out\\xfd.csv" in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


def test_a_non_utf8_file_name_on_stdout(checkpoint, tmp_path, capsysbinary) -> None:
    bad = _png(tmp_path / BAD_NAME, seed=1)
    assert main([*_args(checkpoint, bad, tmp_path / os.fsdecode(b"gone\xff.dcm")), "-o", "-"]) == 0
    rows = _rows(capsysbinary.readouterr().out)
    assert {Path(r["file"]).name: r["error"] for r in rows} == {
        "bad\\xff\\xfe.png": "",
        "gone\\xff.dcm": "does not exist",
    }


# -- item 5: CSV formula injection -----------------------------------------------------------------


def _no_formula(cell: str) -> bool:
    return not cell.startswith(FORMULA_STARTS)


def test_cells_a_spreadsheet_would_run_are_escaped(hostile_checkpoint, tmp_path, monkeypatch) -> None:
    """Class names and file names starting with ``= + - @`` reach every text cell with a
    leading ``'`` (each item of ``flags`` and ``top8`` too); numbers stay numbers."""
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "=HYPERLINK(1).png")
    _png(tmp_path / "@cmd.png", seed=2)
    out = tmp_path / "r.csv"
    args = [*_args(hostile_checkpoint, "=HYPERLINK(1).png", "@cmd.png", "+gone.png"), "-o", str(out)]
    assert main(args) == 0
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    header, body = table[0], table[1:]
    assert len(body) == 3
    for cells in table:
        assert all(_no_formula(c) for c in cells), cells
    prob_cols = [i for i, h in enumerate(header) if h.startswith("prob_")]
    assert len(prob_cols) == 14
    flags, top8 = header.index("flags"), header.index("top8")
    files = {r[0]: r for r in body}
    assert files.keys() == {"'=HYPERLINK(1).png", "'@cmd.png", "'+gone.png"}
    for r in (files["'=HYPERLINK(1).png"], files["'@cmd.png"]):
        assert all(0.0 <= float(r[i]) <= 1.0 for i in prob_cols)  # numbers, not escaped
        assert len(r[flags].split(";")) == 14  # all flagged at threshold 1e-6
        for name in r[flags].split(";") + [item.rsplit(":", 1)[0] for item in r[top8].split(";")]:
            assert _no_formula(name), name  # also safe where a spreadsheet splits on ';'
        assert {'\'=HYPERLINK("http://example.invalid","x")', "'@SUM(1)", "'-Minus"} <= set(
            r[flags].split(";")
        )


def test_write_csv_escapes_error_and_warning_but_not_numbers() -> None:
    buf = io.StringIO()
    write_csv(
        [
            TriageRow("-x.png", "=cmd|' /C calc'!A0"),
            TriageRow("\tt.png", "\rr", warning="@w"),
            TriageRow("ok.png", probabilities=(0.25,), triage_score=0.5, top8=(("A", 0.25),), warning="+w"),
        ],
        ("A",),
        buf,
    )
    assert buf.getvalue().split("\n") == [
        "file,error,triage_score,prob_A,flags,top8,warning",
        "'-x.png,'=cmd|' /C calc'!A0,,,,,",
        "'\tt.png,\"'\rr\",,,,,'@w",
        "ok.png,,0.500000,0.250000,,A:0.2500,'+w",
        "",
    ]


# -- item 6: where -o writes -----------------------------------------------------------------------


@pytest.fixture
def spy(monkeypatch) -> list[int]:
    """Counts the analyses that start (to show that a bad output is found before any)."""
    import cxr_viewer.cli.triage as triage

    calls: list[int] = []
    real = triage.triage_files

    def counting(files, *a, **kw):
        calls.append(len(files))
        return real(files, *a, **kw)

    monkeypatch.setattr(triage, "triage_files", counting)
    return calls


def test_a_symlink_is_written_through(checkpoint, tmp_path) -> None:
    good = _png(tmp_path / "good.png")
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "real" / "results.csv")  # dangling until the run
    assert main([*_args(checkpoint, good), "-o", str(link)]) == 0
    assert link.is_symlink()
    assert len(_rows((tmp_path / "real" / "results.csv").read_bytes())) == 1
    assert main([*_args(checkpoint, good, good.with_name("gone.png")), "-o", str(link)]) == 0  # again
    assert link.is_symlink()
    assert len(_rows(link.read_bytes())) == 2
    assert _leftovers(tmp_path) == []


def test_a_fifo_is_written_to_not_replaced(checkpoint, tmp_path) -> None:
    good = _png(tmp_path / "good.png")
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        assert main([*_args(checkpoint, good), "-o", str(fifo)]) == 0
        data, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert len(_rows(data)) == 1
    assert _leftovers(tmp_path) == []


def test_a_link_to_stdout_reaches_stdout(checkpoint, tmp_path, capfd) -> None:
    """What ``-o /dev/stdout`` is (a link to ``/proc/self/fd/1``), with a link of our own: the test must
    not replace the machine's /dev/stdout when it fails. Here fd 1 is capfd's file; a pipe or a terminal
    is a special file, as in the FIFO test."""
    good = _png(tmp_path / "good.png")
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    os.write(1, b"before\n")  # written in place: the CSV comes after what is there
    assert main([*_args(checkpoint, good), "-o", str(link)]) == 0
    assert link.is_symlink()
    out = capfd.readouterr().out
    assert out.startswith("before\nfile,error,")
    assert len(_rows(out.removeprefix("before\n").encode())) == 1
    assert _leftovers(tmp_path) == []


def test_a_character_device_is_written_to(checkpoint, tmp_path) -> None:
    """A null device of our own (``/dev/null`` itself would be replaced if this failed)."""
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc.strerror}")
    assert main([*_args(checkpoint, _png(tmp_path / "good.png")), "-o", str(null)]) == 0
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["folder", "missing folder", "read-only folder", "file as folder"])
def test_a_bad_output_is_refused_before_any_analysis(checkpoint, tmp_path, capsys, spy, kind) -> None:
    good = _png(tmp_path / "good.png")
    target = {
        "folder": tmp_path,
        "missing folder": tmp_path / "no" / "such" / "r.csv",
        "read-only folder": Path("/proc/cxr-triage-test.csv"),  # read-only even for root
        "file as folder": good / "r.csv",
    }[kind]
    assert main([*_args(checkpoint, good), "-o", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cxr-triage: ") and str(target) in err[0], err
    assert spy == []
    assert _leftovers(tmp_path) == []
    assert not list(tmp_path.glob("*.part"))  # ``-o DIR`` used to leave DIR.part beside it
    assert not Path(f"{tmp_path}.part").exists()


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_no_part_file_is_left_when_writing_fails(checkpoint, tmp_path, monkeypatch, failure) -> None:
    import cxr_viewer.cli.triage as triage

    def half_written(rows, class_names, stream):
        stream.write("file,error\n")
        raise failure("simulated")

    monkeypatch.setattr(triage, "write_csv", half_written)
    good = _png(tmp_path / "good.png")
    out = tmp_path / "out.csv"
    out.write_text("an earlier result\n")
    args = [*_args(checkpoint, good), "-o", str(out)]
    if failure is KeyboardInterrupt:
        assert main(args) == 130
    else:
        with pytest.raises(RuntimeError):
            main(args)
    assert out.read_text() == "an earlier result\n"  # untouched
    assert _leftovers(tmp_path) == []


def test_no_part_file_is_left_when_the_model_does_not_load(tmp_path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    assert main([*_args(bad, _png(tmp_path / "good.png")), "-o", str(tmp_path / "r.csv")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors", "good.png"]


# -- item 7: every input that could not be listed gets a row --------------------------------------


def test_folders_that_could_not_be_listed_are_rows_and_counted(
    checkpoint, tmp_path, monkeypatch, capsys
) -> None:
    """Whatever the walker says about a folder it could not list (permission, a path over PATH_MAX), the
    row is kept; files that are not images at all are still left out."""
    import cxr_viewer.batch as batch

    good = _png(tmp_path / "good.png")
    (tmp_path / "locked").mkdir()
    deep = tmp_path / ("d" * 200) / ("e" * 200)
    (tmp_path / "README.txt").write_text("notes")
    found = [
        FoundFile(good),
        FoundFile(tmp_path / "README.txt", "not an image (unrecognised file type)"),
        FoundFile(tmp_path / "locked", "folder could not be read: Permission denied"),
        FoundFile(deep, "path too long to open (over PATH_MAX)"),
    ]
    monkeypatch.setattr(batch, "iter_study_files", lambda paths: iter(found))
    assert [f for f, _ in collect_files([tmp_path])] == [good, tmp_path / "locked", deep]
    out = tmp_path / "r.csv"
    assert main([*_args(checkpoint, tmp_path), "-o", str(out)]) == 0
    rows = {r["file"]: r["error"] for r in _rows(out.read_bytes())}
    assert rows == {
        str(good): "",
        str(tmp_path / "locked"): "folder could not be read: Permission denied",
        str(deep): "path too long to open (over PATH_MAX)",
    }
    assert "1 analysed (" in (err := capsys.readouterr().err) and "2 not readable" in err, err


def test_a_path_over_path_max_is_a_row_and_counted(checkpoint, tmp_path, capsys) -> None:
    """Folders nested past PATH_MAX (4096 bytes), made through directory descriptors: the walker cannot
    list the deepest one, and that is a row, not a silent gap."""
    good = _png(tmp_path / "good.png")
    top = tmp_path / "deep"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(18):  # 18 x 251 bytes > 4096
            os.mkdir("d" * 250, dir_fd=fd)
            nxt = os.open("d" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with os.fdopen(os.open("lost.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as fh:
            fh.write(good.read_bytes())
    finally:
        os.close(fd)
    out = tmp_path / "r.csv"
    assert main([*_args(checkpoint, good, top), "-o", str(out)]) == 0
    rows = _rows(out.read_bytes())
    assert len(rows) == 2, rows
    (row,) = (r for r in rows if r["file"] != str(good))
    assert row["file"].startswith(str(top)) and row["error"], row
    assert "1 analysed (" in (err := capsys.readouterr().err) and "1 not readable" in err, err


# -- item 9 (CLI part): sizes that cannot be a film ------------------------------------------------


def test_images_that_cannot_be_a_film_are_error_rows(checkpoint, tmp_path) -> None:
    good = _png(tmp_path / "good.png")
    _png(tmp_path / "dot.png", side=1)
    from PIL import Image

    Image.fromarray(np.zeros((150, 4000), np.uint8)).save(tmp_path / "strip.png")
    out = tmp_path / "r.csv"
    assert main([*_args(checkpoint, good, tmp_path / "dot.png", tmp_path / "strip.png"), "-o", str(out)]) == 0
    rows = {Path(r["file"]).name: r for r in _rows(out.read_bytes())}
    assert rows["good.png"]["error"] == "" and rows["good.png"]["triage_score"]
    assert rows["dot.png"]["error"].startswith("image too small to be a radiograph: 1 x 1 px")
    assert rows["strip.png"]["error"].startswith("image too elongated to be a radiograph: 4000 x 150 px")
    assert rows["dot.png"]["triage_score"] == rows["strip.png"]["triage_score"] == ""
