"""Render qlora_gui/resources/icons/app.svg into app.png (window icon, Linux) and app.icns (the macOS bundle).

    .venv/bin/python scripts/make_icons.py

The .icns is written directly (a header, then one PNG per size), so this runs on
Linux as well as on a Mac; `iconutil` is not needed. Both outputs are committed.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

ICONS = Path(__file__).resolve().parents[1] / "qlora_gui" / "resources" / "icons"
# ICNS element types holding PNG data, by pixel size (the @2x types share sizes with the plain ones).
ICNS_TYPES = [
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),
    (b"icp6", 64),
    (b"ic12", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic13", 256),
    (b"ic09", 512),
    (b"ic14", 512),
    (b"ic10", 1024),
]


def render(renderer: QSvgRenderer, size: int) -> bytes:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data)


def icns(pngs: dict[int, bytes]) -> bytes:
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> int:
    QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(ICONS / "app.svg"))
    if not renderer.isValid():
        print(f"error: cannot read {ICONS / 'app.svg'}", file=sys.stderr)
        return 2
    pngs = {size: render(renderer, size) for size in sorted({s for _, s in ICNS_TYPES})}
    (ICONS / "app.png").write_bytes(pngs[256])
    (ICONS / "app.icns").write_bytes(icns(pngs))
    print(f"wrote {ICONS / 'app.png'} and {ICONS / 'app.icns'} ({len(icns(pngs)) / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
