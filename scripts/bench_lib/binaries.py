"""Binary sizes (and whether they carry a symbol table) of the plugins the scenarios use."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from typing import Optional


def has_symtab(path: str) -> Optional[bool]:
    """True if the ELF file has a .symtab section (i.e. is not stripped)."""
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if ident[:4] != b"\x7fELF":
                return None
            is64 = ident[4] == 2
            end = "<" if ident[5] == 1 else ">"
            if is64:
                f.seek(0x28)
                (shoff,) = struct.unpack(end + "Q", f.read(8))
                f.seek(0x3A)
                shentsize, shnum = struct.unpack(end + "HH", f.read(4))
            else:
                f.seek(0x20)
                (shoff,) = struct.unpack(end + "I", f.read(4))
                f.seek(0x2E)
                shentsize, shnum = struct.unpack(end + "HH", f.read(4))
            for i in range(shnum):
                f.seek(shoff + i * shentsize + 4)
                (sh_type,) = struct.unpack(end + "I", f.read(4))
                if sh_type == 2:  # SHT_SYMTAB
                    return True
            return False
    except (OSError, struct.error):
        return None


def stripped_size(path: str) -> Optional[int]:
    strip = shutil.which("strip")
    if not strip:
        return None
    with tempfile.TemporaryDirectory(prefix="rcni-bench-strip-") as d:
        dst = os.path.join(d, "bin")
        shutil.copyfile(path, dst)
        p = subprocess.run([strip, "-o", dst + ".s", dst], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if p.returncode != 0:
            return None
        return os.path.getsize(dst + ".s")


def describe(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    sym = has_symtab(path)
    d = {"path": path, "bytes": size, "stripped": (not sym) if sym is not None else None}
    d["stripped_bytes"] = size if sym is False else (stripped_size(path) if sym else None)
    return d
