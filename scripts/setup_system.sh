#!/usr/bin/env bash
# Installs the system libraries Qt and fast training need on Debian/Ubuntu when they are missing.
# macOS needs nothing here: the PySide6 wheel carries its frameworks.
set -u
[ "$(uname -s)" = "Linux" ] || exit 0
command -v ldconfig >/dev/null 2>&1 || exit 0
need=()
have() { ldconfig -p | grep -q "$1"; }
have libEGL.so.1        || need+=(libegl1)
have libGL.so.1         || need+=(libgl1)
have libxkbcommon.so.0  || need+=(libxkbcommon0)
have libfontconfig.so.1 || need+=(libfontconfig1)
have libdbus-1.so.3     || need+=(libdbus-1-3)
# OpenBLAS: MLX's Linux wheel bundles a reference BLAS about 50x slower (see core/blas.py).
have libopenblas.so.0   || need+=(libopenblas0-pthread)
# For a real window (the xcb platform plugin); offscreen tests need none of these.
have libxcb-icccm.so.4        || need+=(libxcb-icccm4)
have libxcb-keysyms.so.1      || need+=(libxcb-keysyms1)
have libxcb-image.so.0        || need+=(libxcb-image0)
have libxcb-render-util.so.0  || need+=(libxcb-render-util0)
have libxcb-shape.so.0        || need+=(libxcb-shape0)
have libxcb-cursor.so.0       || need+=(libxcb-cursor0)
have libxkbcommon-x11.so.0    || need+=(libxkbcommon-x11-0)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "The app needs these system packages: ${need[*]}. Install them with your package manager." >&2
  exit 0
fi
echo "Installing system libraries: ${need[*]}"
# Not fatal: offscreen tests need none of these; without them training is slower or no window opens.
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }; then
  echo "warning: could not install ${need[*]}; continuing without them" >&2
fi
exit 0
