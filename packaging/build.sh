#!/usr/bin/env bash
# Build the one-folder desktop app dist/cxr-viewer/ with PyInstaller, in a venv of its own.
#
#   packaging/build.sh                 # full build: the torch of constraints.txt (CUDA libraries included)
#   packaging/build.sh --cpu-only      # CPU-only torch, no CUDA/NVIDIA/triton libraries (much smaller)
#
# Options:
#   --cpu-only          build in a venv with a CPU-only torch (default venv build/pkgvenv-cpu)
#   --venv DIR          the build venv (created when missing; default build/pkgvenv or build/pkgvenv-cpu)
#   --python PY         interpreter for a new venv (default python3; needs its shared libpython)
#   --no-install        use the venv as it is (it must already hold the project's dependencies + pyinstaller)
#   --model-dir DIR     folder with cral_demo.safetensors (+ MODEL_CARD.md) to bundle (default resources/models)
#   --dist DIR          output folder (default dist); the app lands in DIR/cxr-viewer
#   --tarball           also pack DIR/cxr-viewer-VERSION-linux-ARCH[-cpu].tar.gz
#   --clean             delete PyInstaller's cache and work folder first
#
# Environment:
#   CPU_TORCH           pip arguments that install a CPU-only torch + matching torchvision
#                       (default: "torch torchvision --index-url https://download.pytorch.org/whl/cpu").
#                       Offline example: CPU_TORCH="/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl torchvision==0.28.0"
#   PIP_ARGS            extra arguments for every pip install
#
# On Windows/macOS run the same spec by hand (see docs/PACKAGING.md).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

cpu_only=0
venv=""
python="${PYTHON:-python3}"
install=1
model_dir=""
dist="dist"
tarball=0
clean=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu-only) cpu_only=1; shift ;;
        --venv) venv="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --no-install) install=0; shift ;;
        --model-dir) model_dir="$2"; shift 2 ;;
        --dist) dist="$2"; shift 2 ;;
        --tarball) tarball=1; shift ;;
        --clean) clean=1; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

suffix=$([[ $cpu_only == 1 ]] && echo "-cpu" || true)
venv="${venv:-build/pkgvenv$suffix}"
work="build/pyinstaller$suffix"
py="$venv/bin/python"
log() { printf '\n== %s\n' "$*"; }

if [[ ! -x "$py" ]]; then
    [[ $install == 1 ]] || { echo "build.sh: --no-install but $venv has no python" >&2; exit 1; }
    log "creating $venv with $python"
    "$python" -m venv "$venv"
fi
"$py" - <<'PY'
import sys, sysconfig
if not sysconfig.get_config_var("Py_ENABLE_SHARED") and sys.platform.startswith("linux"):
    sys.exit("build.sh: this Python has no shared libpython; PyInstaller needs one "
             "(pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install ...)")
PY

if [[ $install == 1 ]]; then
    pip=("$py" -m pip install ${PIP_ARGS:-})
    "$py" -m pip install ${PIP_ARGS:-} --upgrade pip >/dev/null
    constraints="constraints.txt"
    if [[ $cpu_only == 1 ]]; then
        log "installing a CPU-only torch"
        # shellcheck disable=SC2086  # CPU_TORCH is a list of pip arguments
        "${pip[@]}" ${CPU_TORCH:-torch torchvision --index-url https://download.pytorch.org/whl/cpu}
        # constraints.txt pins the CUDA torch of the dev venv: pin what was just installed instead.
        mkdir -p build
        constraints="build/constraints-cpu.txt"
        grep -v -E '^(torch|torchvision)==' constraints.txt > "$constraints"
        "$py" -c 'import importlib.metadata as m; [print(f"{d}=={m.version(d)}") for d in ("torch", "torchvision")]' >> "$constraints"
    fi
    log "installing the app and PyInstaller into $venv"
    "${pip[@]}" -c "$constraints" "pyinstaller>=6.10" "$root"
fi

if [[ $cpu_only == 1 ]]; then
    "$py" -c 'import sys, torch; sys.exit(0 if torch.version.cuda is None else f"build.sh --cpu-only: {torch.__version__} is a CUDA build")'
fi
"$py" -c 'import PyInstaller, torch, torchvision, PySide6, pyqtgraph, pydicom; print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| PySide6", PySide6.__version__, "| PyInstaller", PyInstaller.__version__)'

if [[ ! -f resources/icons/cxr-triage-256.png ]]; then
    log "rendering icons"
    QT_QPA_PLATFORM=offscreen "$py" packaging/render_icons.py
fi

pyi_args=(--noconfirm --distpath "$dist" --workpath "$work")
[[ $clean == 1 ]] && pyi_args+=(--clean)
log "PyInstaller ($([[ $cpu_only == 1 ]] && echo CPU-only || echo full)) -> $dist/cxr-viewer"
start=$(date +%s)
CXR_VIEWER_CPU_ONLY=$cpu_only CXR_VIEWER_MODEL_DIR="${model_dir:-$root/resources/models}" \
    "$py" -m PyInstaller "${pyi_args[@]}" packaging/cxr-viewer.spec
end=$(date +%s)

app="$dist/cxr-viewer"
log "done in $((end - start)) s: $app"
du -sh "$app" | sed 's/^/total: /'
internal="$app/_internal"
cuda_kb=$( { du -sk "$internal/nvidia" "$internal/triton" "$internal/cuda" 2>/dev/null || true
             find "$internal" -maxdepth 3 \( -name 'libtorch_cuda*' -o -name 'libc10_cuda*' -o -name 'libcu*' -o -name 'libnccl*' -o -name 'libnvrtc*' \) -printf '%k\n' 2>/dev/null || true
           } | awk '{s += $1} END {print s + 0}')
echo "CUDA/NVIDIA/triton libraries in it: $((cuda_kb / 1024)) MiB"
for d in torch PySide6 cv2 onnxruntime resources; do
    [[ -e "$internal/$d" ]] && du -sh "$internal/$d" | sed 's/^/  /'
done
if [[ ! -f "$internal/resources/models/cral_demo.safetensors" ]]; then
    echo "WARNING: no bundled model (resources/models/cral_demo.safetensors): the app starts without findings" >&2
fi

if [[ $tarball == 1 ]]; then
    version=$("$py" -c 'import sys; sys.path.insert(0, "."); import cxr_viewer; print(cxr_viewer.__version__)')
    tgz="$dist/cxr-viewer-$version-linux-$(uname -m)$suffix.tar.gz"
    log "packing $tgz"
    tar -C "$dist" -czf "$tgz" cxr-viewer
    du -sh "$tgz"
fi
