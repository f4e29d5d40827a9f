"""Packaging: desktop integration files (fast) and the built one-folder app (slow, manual).

The slow smoke tests run only when ``dist/cxr-viewer/cxr-viewer`` exists (``make package`` /
``packaging/build.sh``); CI does not build it. ``CXR_VIEWER_EXE`` points them at another build.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
LINUX = PACKAGING / "linux"
ICONS = ROOT / "resources" / "icons"
SHARED = ROOT.parent / "shared" / "data"
APP_ID = "io.github.cxrtriage.viewer"
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
EXE = Path(os.environ.get("CXR_VIEWER_EXE") or ROOT / "dist" / "cxr-viewer" / "cxr-viewer")
SAMPLE_PNG = SHARED / "chestxray14-fullres-samples" / "images" / "00000001_000.png"
COMPRESSED_DICOM = ("RG1_J2KR.dcm", "RG2_JLSL.dcm", "RG2_JPLL.dcm")


def _desktop_entry() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(LINUX / "cxr-viewer.desktop", encoding="utf-8")
    assert parser.sections() == ["Desktop Entry"]
    return dict(parser["Desktop Entry"])


def _list(value: str) -> list[str]:
    assert value.endswith(";"), f"a desktop-entry list must end with ';': {value!r}"
    return value[:-1].split(";")


# --- fast: desktop entry, MIME type, AppStream, icons, scripts -----------------------------------


def test_desktop_entry_keys() -> None:
    entry = _desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Name"]
    assert entry["Comment"]
    assert entry["Exec"] == "cxr-viewer %F"
    assert entry["Icon"] == "cxr-triage"
    assert entry["Terminal"] == "false"
    assert set(_list(entry["MimeType"])) == {"application/dicom", "image/png", "image/jpeg", "image/tiff"}
    assert _list(entry["Categories"]) == ["Graphics", "MedicalSoftware", "Science"]


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_entry_validates() -> None:
    result = subprocess.run(
        ["desktop-file-validate", str(LINUX / "cxr-viewer.desktop")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout.lower()


def test_dicom_mime_type() -> None:
    root = ET.parse(LINUX / "cxr-viewer-dicom.xml").getroot()
    assert root.tag == f"{MIME_NS}mime-info"
    (mime,) = root.findall(f"{MIME_NS}mime-type")
    assert mime.get("type") == "application/dicom"
    assert "*.dcm" in {g.get("pattern") for g in mime.findall(f"{MIME_NS}glob")}
    matches = mime.findall(f"{MIME_NS}magic/{MIME_NS}match")
    assert any(
        m.get("type") == "string" and m.get("value") == "DICM" and m.get("offset") == "128" for m in matches
    )


def test_dicom_magic_matches_real_files() -> None:
    """The rule (b"DICM" at offset 128) holds for the real DICOM files in shared data."""
    files = sorted((SHARED / "dicom").glob("*.dcm"))
    if not files:
        pytest.skip(f"no DICOM files under {SHARED / 'dicom'}")
    for path in files:
        with path.open("rb") as f:
            head = f.read(132)
        assert head[128:132] == b"DICM", path.name


def test_appstream_metainfo() -> None:
    root = ET.parse(LINUX / f"{APP_ID}.metainfo.xml").getroot()
    assert root.tag == "component"
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findtext("project_license") == "MIT"
    assert root.findtext("name")
    assert root.findtext("summary")
    launchable = root.find("launchable")
    assert launchable is not None
    assert launchable.get("type") == "desktop-id"
    assert (LINUX / (launchable.text or "")).is_file()
    assert root.findtext("icon") == _desktop_entry()["Icon"]
    assert root.findtext("provides/binary") == "cxr-viewer"
    media = {m.text for m in root.findall("provides/mediatype")}
    assert media == set(_list(_desktop_entry()["MimeType"]))
    assert "not a medical device" in ET.tostring(root.find("description"), encoding="unicode")  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream (appstreamcli) not installed")
def test_appstream_metainfo_validates() -> None:
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(LINUX / f"{APP_ID}.metainfo.xml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_svg_icon_parses() -> None:
    root = ET.parse(ICONS / "cxr-triage.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    _, _, width, height = (float(v) for v in (root.get("viewBox") or "").split())
    assert width == height


@pytest.mark.parametrize("size", ICON_SIZES)
def test_png_icon_sizes(size: int) -> None:
    path = ICONS / f"cxr-triage-{size}.png"
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (size, size), f"{path.name} is {im.size}"
        rgba = np.asarray(im.convert("RGBA"))
    alpha = rgba[..., 3]
    assert alpha.max() == 255  # not empty
    assert alpha[size // 2, size // 2] == 255  # the tile is opaque in the middle
    assert rgba[..., :3].std() > 10  # not one flat colour


def test_no_stray_icon_pngs() -> None:
    """Every PNG is one of the named sizes (no stale renders left behind)."""
    names = {p.name for p in ICONS.glob("*.png")}
    assert names == {f"cxr-triage-{s}.png" for s in ICON_SIZES}


def test_spec_and_scripts_are_well_formed() -> None:
    spec = (PACKAGING / "cxr-viewer.spec").read_text(encoding="utf-8")
    ast.parse(spec)
    for needed in ("cxr_viewer_entry.py", "pyi_rth_cxr_viewer.py", "install.sh", "uninstall.sh"):
        assert needed in spec
    assert "collect_entry_point" in spec  # pydicom's pylibjpeg plugins are found via entry points
    for script in (
        PACKAGING / "cxr_viewer_entry.py",
        PACKAGING / "pyi_rth_cxr_viewer.py",
        PACKAGING / "render_icons.py",
    ):
        ast.parse(script.read_text(encoding="utf-8"))
    for sh in (PACKAGING / "build.sh", LINUX / "install.sh", LINUX / "uninstall.sh"):
        assert os.access(sh, os.X_OK), f"{sh} is not executable"
        subprocess.run(["bash", "-n", str(sh)], check=True)


def _fake_build(tmp_path: Path) -> Path:
    """A folder laid out like dist/cxr-viewer (what the spec writes), with a stand-in executable."""
    src = tmp_path / "dist" / "cxr-viewer"
    (src / "_internal").mkdir(parents=True)
    exe = src / "cxr-viewer"
    exe.write_text('#!/bin/sh\necho fake cxr-viewer "$@"\n')
    exe.chmod(0o755)
    share = src / "share"
    for sub, name in (
        ("applications", "cxr-viewer.desktop"),
        ("metainfo", f"{APP_ID}.metainfo.xml"),
        ("mime/packages", "cxr-viewer-dicom.xml"),
    ):
        (share / sub).mkdir(parents=True)
        shutil.copy2(LINUX / name, share / sub / name)
    for size in ICON_SIZES:
        dest = share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        dest.mkdir(parents=True)
        shutil.copy2(ICONS / f"cxr-triage-{size}.png", dest / "cxr-triage.png")
    return src


def test_install_and_uninstall_scripts(tmp_path: Path) -> None:
    src = _fake_build(tmp_path)
    prefix = tmp_path / "prefix"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(prefix / "share")}
    subprocess.run(
        ["bash", str(LINUX / "install.sh"), "--prefix", str(prefix), "--from", str(src)],
        check=True,
        env=env,
        capture_output=True,
    )
    opt = prefix / "opt" / "cxr-viewer"
    assert (opt / "cxr-viewer").is_file()
    assert (prefix / "bin" / "cxr-viewer").resolve() == (opt / "cxr-viewer").resolve()
    out = subprocess.run([str(prefix / "bin" / "cxr-viewer"), "x.dcm"], capture_output=True, text=True)
    assert out.stdout.strip() == "fake cxr-viewer x.dcm"
    desktop = (prefix / "share" / "applications" / "cxr-viewer.desktop").read_text()
    assert f"Exec={opt / 'cxr-viewer'} %F" in desktop.splitlines()
    assert (prefix / "share" / "icons" / "hicolor" / "256x256" / "apps" / "cxr-triage.png").is_file()
    assert (prefix / "share" / "mime" / "packages" / "cxr-viewer-dicom.xml").is_file()
    assert (prefix / "share" / "metainfo" / f"{APP_ID}.metainfo.xml").is_file()
    if shutil.which("update-mime-database"):
        globs = (prefix / "share" / "mime" / "globs2").read_text()
        assert "application/dicom:*.dcm" in globs

    subprocess.run(
        ["bash", str(LINUX / "uninstall.sh"), "--prefix", str(prefix)],
        check=True,
        env=env,
        capture_output=True,
    )
    assert not opt.exists()
    assert not (prefix / "bin" / "cxr-viewer").exists()
    assert not (prefix / "share" / "applications" / "cxr-viewer.desktop").exists()
    assert not list((prefix / "share" / "icons").rglob("cxr-triage.*"))


def test_install_refuses_without_a_build(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "bash",
            str(LINUX / "install.sh"),
            "--prefix",
            str(tmp_path / "p"),
            "--from",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "no build" in result.stderr


# --- slow: the built executable ------------------------------------------------------------------


def _run_built(out_png: Path, *images: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for var in ("CXR_TRIAGE_MODEL", "PYTHONPATH", "PYTHONHOME", "QT_PLUGIN_PATH", "QT_API"):
        env.pop(var, None)  # the bundle must work on its own
    return subprocess.run(
        [str(EXE), "--screenshot", str(out_png), *map(str, images)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=out_png.parent,
    )


def _bundled_model() -> Path:
    return EXE.parent / "_internal" / "resources" / "models" / "cral_demo.safetensors"


needs_build = pytest.mark.skipif(
    not EXE.is_file(), reason=f"no built app at {EXE} (build it with `make package` / packaging/build.sh)"
)


@pytest.mark.slow
@needs_build
@pytest.mark.skipif(sys.platform != "linux", reason="the smoke test drives the Linux build")
def test_built_app_screenshot_and_findings(tmp_path: Path) -> None:
    if not SAMPLE_PNG.is_file():
        pytest.skip(f"sample image missing: {SAMPLE_PNG}")
    out = tmp_path / "shot.png"
    result = _run_built(out, SAMPLE_PNG)
    assert result.returncode == 0, result.stdout + result.stderr
    with Image.open(out) as im:
        width, height = im.size
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert width >= 800
    assert height >= 500
    assert pixels.std() > 20, "the screenshot is blank"
    assert len(np.unique(pixels)) > 64, "the screenshot has too few grey levels to hold an X-ray"
    assert f"{SAMPLE_PNG}:" in result.stdout
    if not _bundled_model().is_file():
        assert "No trained model loaded" in result.stdout
        pytest.skip(
            "this build bundles no model (resources/models/cral_demo.safetensors): findings not checked"
        )
    assert "triage score" in result.stdout
    # "  1. Atelectasis          0.139  (threshold 0.129, ABOVE)": the bundled model has thresholds
    ranked = re.findall(
        r"^\s+\d+\.\s+(\S.*?)\s+(0\.\d+|1\.0+)\s+\(threshold 0\.\d+(?:, ABOVE)?\)\s*$",
        result.stdout,
        flags=re.M,
    )
    assert len(ranked) == 8, result.stdout
    probs = [float(p) for _, p in ranked]
    assert probs == sorted(probs, reverse=True)


@pytest.mark.slow
@needs_build
@pytest.mark.skipif(sys.platform != "linux", reason="the smoke test drives the Linux build")
def test_built_app_decodes_compressed_dicom(tmp_path: Path) -> None:
    """JPEG 2000, JPEG-LS and JPEG lossless DICOM: the decoder plugins and their entry points are bundled."""
    files = [SHARED / "dicom" / name for name in COMPRESSED_DICOM]
    if not all(f.is_file() for f in files):
        pytest.skip(f"compressed DICOM samples missing under {SHARED / 'dicom'}")
    result = _run_built(tmp_path / "dicom.png", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error:" not in result.stdout, result.stdout
    for f in files:
        assert f"{f}:" in result.stdout
