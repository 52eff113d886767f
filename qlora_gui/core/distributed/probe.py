"""What one host reports before a run: its Python environment and the content of the model and data it would use.

Run on every host as `PYTHON -m qlora_gui.core.distributed.probe PATH...` (over ssh, or as a local process); it
prints one JSON object. Content hashes are sha256 over every file (hidden files such as .DS_Store left out, links
followed, as a Hugging Face cache snapshot is made of them). A file's hash is kept in the user's cache folder by
(path, size, modification time), so a check of a model that has not changed reads none of its bytes again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("qlora-gui", "mlx", "mlx-metal", "mlx-cpu", "mlx-lm", "transformers", "tokenizers", "numpy")
CHUNK = 1 << 20


def environment() -> dict[str, Any]:
    """The interpreter and the versions of the packages training depends on (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "host": socket.gethostname(),
        "python": sys.executable,
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "packages": versions,
        "macos": platform.mac_ver()[0],  # "" elsewhere
        "rdma": rdma_status(),
    }


def rdma_status() -> str | None:
    """What `rdma_ctl status` says (JACCL needs "enabled"); None where there is no rdma_ctl."""
    try:
        done = subprocess.run(["rdma_ctl", "status"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout or done.stderr).strip()


class HashCache:
    """sha256 of files by path, valid while their size and mtime stay: one JSON file in the user's cache folder,
    of at most MAX_ENTRIES files (the oldest go first)."""

    MAX_ENTRIES = 20_000

    def __init__(self, path: Path | None = None):
        if path is None:
            from platformdirs import user_cache_dir

            path = Path(user_cache_dir("qlora-gui", appauthor=False)) / "content-hashes.json"
        self.path = path
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        self.known: dict[str, list[Any]] = known if isinstance(known, dict) else {}  # path: [size, mtime, sha256]
        self.changed = False

    def file_hash(self, path: Path) -> str:
        st, key = path.stat(), str(path.resolve())
        seen = self.known.get(key)
        if isinstance(seen, list) and seen[:2] == [st.st_size, st.st_mtime_ns]:
            return str(seen[2])
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        self.known.pop(key, None)  # re-inserted last: the newest
        self.known[key], self.changed = [st.st_size, st.st_mtime_ns, digest.hexdigest()], True
        return digest.hexdigest()

    def save(self) -> None:
        """Best effort: a cache that cannot be written only costs reading the files again next time."""
        if not self.changed:
            return
        keep = dict(list(self.known.items())[-self.MAX_ENTRIES :])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(keep), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass


def content(path: str | Path, cache: HashCache) -> dict[str, Any]:
    """{kind: file, folder or missing; files; bytes; sha256} for a file or a folder (every file in it)."""
    p = Path(path)
    if p.is_file():
        return {"kind": "file", "files": 1, "bytes": p.stat().st_size, "sha256": cache.file_hash(p)}
    if not p.is_dir():
        return {"kind": "missing", "files": 0, "bytes": 0, "sha256": ""}
    digest, files, size = hashlib.sha256(), 0, 0
    for root, dirs, names in os.walk(p, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            f = Path(root) / name
            if not f.is_file():
                continue
            rel = f.relative_to(p).as_posix()
            n = f.stat().st_size
            digest.update(f"{rel}\0{n}\0{cache.file_hash(f)}\n".encode())
            files, size = files + 1, size + n
    return {"kind": "folder", "files": files, "bytes": size, "sha256": digest.hexdigest()}


def probe(paths: list[str], cache: HashCache | None = None) -> dict[str, Any]:
    """This host's report: its environment and the content at each path."""
    cache = cache or HashCache()
    report = environment()
    report["paths"] = {path: content(path, cache) for path in paths}
    cache.save()
    return report


def main(argv: list[str]) -> int:
    print(json.dumps(probe(argv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
