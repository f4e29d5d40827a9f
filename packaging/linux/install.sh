#!/usr/bin/env bash
# Install the one-folder cxr-viewer build and register it with the desktop (Linux, freedesktop.org).
#
#   ./install.sh                     # per user: ~/.local/opt/cxr-viewer, ~/.local/bin, ~/.local/share
#   sudo ./install.sh --prefix /usr/local --opt-dir /opt/cxr-viewer      # system-wide
#
# Options:
#   --prefix DIR        bin/ and share/ go under DIR (default: ~/.local)
#   --opt-dir DIR       where the program folder is copied (default: PREFIX/opt/cxr-viewer)
#   --from DIR          the built folder (default: the folder holding this script, or dist/cxr-viewer)
#   --default-for-dicom make the viewer the default application for application/dicom (xdg-mime)
#   --no-register       copy files only; skip update-mime-database / update-desktop-database / icon cache
#
# Run it from the built folder (dist/cxr-viewer/install.sh, copied there by the PyInstaller spec) or
# as packaging/linux/install.sh from the repository after a build. Undo with uninstall.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix="${HOME}/.local"
opt_dir=""
src=""
default_dicom=0
register=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --opt-dir) opt_dir="$2"; shift 2 ;;
        --from) src="$2"; shift 2 ;;
        --default-for-dicom) default_dicom=1; shift ;;
        --no-register) register=0; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [[ -z "$src" ]]; then
    if [[ -x "$here/cxr-viewer" ]]; then
        src="$here"
    else
        src="$(cd "$here/../.." && pwd)/dist/cxr-viewer"
    fi
fi
if [[ ! -x "$src/cxr-viewer" || ! -d "$src/_internal" ]]; then
    echo "install.sh: no build at $src (expected $src/cxr-viewer and $src/_internal); run packaging/build.sh" >&2
    exit 1
fi
if [[ ! -d "$src/share" ]]; then
    echo "install.sh: $src/share is missing (desktop entry, icons, MIME type); rebuild with packaging/cxr-viewer.spec" >&2
    exit 1
fi
prefix=$(mkdir -p "$prefix" && cd "$prefix" && pwd)
opt_dir="${opt_dir:-$prefix/opt/cxr-viewer}"
bin_dir="$prefix/bin"
data_dir="$prefix/share"

echo "Installing $src -> $opt_dir"
if [[ "$(cd "$src" && pwd)" != "$(mkdir -p "$opt_dir" && cd "$opt_dir" && pwd)" ]]; then
    # Replace an older install as a whole, so no stale library from it stays behind.
    tmp="${opt_dir}.new.$$"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$opt_dir")"
    cp -a "$src" "$tmp"
    rm -rf "$opt_dir"
    mv "$tmp" "$opt_dir"
fi
exe="$opt_dir/cxr-viewer"

mkdir -p "$bin_dir" "$data_dir/applications" "$data_dir/metainfo" "$data_dir/mime/packages"
ln -sfn "$exe" "$bin_dir/cxr-viewer"

# Desktop entry with the absolute path: ~/.local/bin is not on every desktop session's PATH.
sed -e "s|^Exec=cxr-viewer|Exec=$exe|" -e "s|^TryExec=cxr-viewer|TryExec=$exe|" \
    "$src/share/applications/cxr-viewer.desktop" > "$data_dir/applications/cxr-viewer.desktop"
chmod 644 "$data_dir/applications/cxr-viewer.desktop"
install -m 644 "$src/share/metainfo/io.github.cxrtriage.viewer.metainfo.xml" "$data_dir/metainfo/"
install -m 644 "$src/share/mime/packages/cxr-viewer-dicom.xml" "$data_dir/mime/packages/"
for icon in "$src"/share/icons/hicolor/*/apps/cxr-triage.*; do
    rel="${icon#"$src/share/"}"
    install -D -m 644 "$icon" "$data_dir/$rel"
done

if [[ $register == 1 ]]; then
    if command -v update-mime-database >/dev/null; then
        update-mime-database "$data_dir/mime" || echo "install.sh: update-mime-database failed (ignored)" >&2
    else
        echo "install.sh: update-mime-database not found (shared-mime-info): .dcm files are recognised after the next login" >&2
    fi
    if command -v update-desktop-database >/dev/null; then
        update-desktop-database "$data_dir/applications" || true
    fi
    if command -v gtk-update-icon-cache >/dev/null && [[ -f "$data_dir/icons/hicolor/index.theme" ]]; then
        gtk-update-icon-cache -f -t "$data_dir/icons/hicolor" >/dev/null 2>&1 || true
    fi
    if command -v xdg-icon-resource >/dev/null; then
        xdg-icon-resource forceupdate >/dev/null 2>&1 || true
    fi
    if [[ $default_dicom == 1 ]]; then
        if command -v xdg-mime >/dev/null; then
            xdg-mime default cxr-viewer.desktop application/dicom
        else
            echo "install.sh: xdg-mime not found (xdg-utils): could not make cxr-viewer the default for DICOM" >&2
        fi
    fi
fi

echo "Installed: $bin_dir/cxr-viewer -> $exe"
echo "Desktop entry: $data_dir/applications/cxr-viewer.desktop"
case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) echo "Note: $bin_dir is not on PATH; start the app from the menu or as $exe" ;;
esac
