#!/usr/bin/env bash
# Remove what install.sh put in place. Use the same --prefix / --opt-dir as for the install.
set -euo pipefail
prefix="${HOME}/.local"
opt_dir=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --opt-dir) opt_dir="$2"; shift 2 ;;
        -h|--help) echo "usage: uninstall.sh [--prefix DIR] [--opt-dir DIR]"; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
opt_dir="${opt_dir:-$prefix/opt/cxr-viewer}"
data_dir="$prefix/share"
# Only remove the program folder when it really is a cxr-viewer build.
if [[ -x "$opt_dir/cxr-viewer" && -d "$opt_dir/_internal" ]]; then
    rm -rf "$opt_dir"
fi
if [[ -L "$prefix/bin/cxr-viewer" ]]; then
    rm -f "$prefix/bin/cxr-viewer"
fi
rm -f "$data_dir/applications/cxr-viewer.desktop" \
      "$data_dir/metainfo/io.github.cxrtriage.viewer.metainfo.xml" \
      "$data_dir/mime/packages/cxr-viewer-dicom.xml"
rm -f "$data_dir"/icons/hicolor/*/apps/cxr-triage.png "$data_dir/icons/hicolor/scalable/apps/cxr-triage.svg"
if command -v update-mime-database >/dev/null && [[ -d "$data_dir/mime" ]]; then
    update-mime-database "$data_dir/mime" || true
fi
if command -v update-desktop-database >/dev/null && [[ -d "$data_dir/applications" ]]; then
    update-desktop-database "$data_dir/applications" || true
fi
echo "cxr-viewer removed from $prefix"
