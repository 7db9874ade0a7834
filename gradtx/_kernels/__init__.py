# SPDX-License-Identifier: Apache-2.0
"""Native CPU kernels, built on first use with the system C++ compiler.

gradtx ships C++ source, not binaries: `load()` compiles it against the XLA FFI
headers that come with jaxlib, caches the shared library, and registers its handlers
as XLA:CPU custom-call targets. Nothing here is needed for gradtx to work: where no
compiler is found or the build fails, `load()` says why and callers run the jnp
program instead.

The cache folder is `$GRADTX_CACHE_DIR`, else `$XDG_CACHE_HOME/gradtx`, else
`~/.cache/gradtx`; the file name hashes the source, the compiler command and the
jaxlib version, so an upgrade rebuilds. `$CXX` picks the compiler (default `c++`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import jax
import jaxlib

ADAM_STEP_TARGET = "gradtx_adam_step"

_SOURCE = Path(__file__).with_name("adam_step.cc")
_FLAGS = (
    "-O3",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-fno-math-errno",
    "-ffp-contract=off",
    "-w",
)
_lock = threading.Lock()
_result: tuple[bool, str] | None = None
_libraries: list[ctypes.CDLL] = []  # loaded libraries stay referenced


def cache_dir() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("GRADTX_CACHE_DIR"):
        return Path(os.environ["GRADTX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return Path(base) / "gradtx"


def _compiler() -> list[str] | None:
    cmd = shlex.split(os.environ.get("CXX", "c++"))
    if not cmd or shutil.which(cmd[0]) is None:
        return None
    return cmd


def _include_dir() -> Path:
    return Path(jaxlib.__file__).parent / "include"


def _build(compiler: list[str]) -> Path:
    include = _include_dir()
    if not (include / "xla" / "ffi" / "api" / "ffi.h").is_file():
        raise RuntimeError(f"jaxlib ships no XLA FFI headers under {include}")
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [
                source,
                " ".join(compiler + list(_FLAGS)).encode(),
                jaxlib.__version__.encode(),
                platform.machine().encode(),
            ]
        )
    ).hexdigest()[:16]
    folder = cache_dir()
    target = folder / f"gradtx_kernels_{key}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # Build under a private name, then rename: concurrent processes (pytest-xdist
    # workers, say) each build and the last rename wins, never a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=target.stem, suffix=".so.tmp", dir=folder)
    os.close(fd)
    try:
        cmd = [*compiler, *_FLAGS, f"-I{include}", str(_SOURCE), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            command = " ".join(cmd)
            raise RuntimeError(
                f"`{command}` failed (exit {done.returncode}): " + " | ".join(tail)
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load() -> tuple[bool, str]:
    """Builds (once per machine) and registers the kernels (once per process).

    Returns:
        `(True, path_of_the_library)`, or `(False, why_not)`.
    """
    global _result
    with _lock:
        if _result is not None:
            return _result
        if os.environ.get("GRADTX_DISABLE_KERNELS"):
            _result = (False, "GRADTX_DISABLE_KERNELS is set")
            return _result
        compiler = _compiler()
        if compiler is None:
            _result = (
                False,
                f"no C++ compiler found (CXX={os.environ.get('CXX', 'c++')!r})",
            )
            return _result
        try:
            path = _build(compiler)
            lib = ctypes.cdll.LoadLibrary(str(path))
            _libraries.append(lib)
            jax.ffi.register_ffi_target(
                ADAM_STEP_TARGET,
                jax.ffi.pycapsule(lib.GradtxAdamStep),
                platform="cpu",
            )
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _result = (False, f"building the CPU kernel failed: {e}")
            return _result
        _result = (True, str(path))
        return _result
