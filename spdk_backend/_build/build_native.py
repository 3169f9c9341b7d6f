"""cffi builder for spdk_backend._native (API mode).

Compiles every C file of the engine (native/lib, native/module) into the
extension, so ``pip install .`` needs only a C compiler and liburing.
Not installed: setup.py names it in ``cffi_modules``.
"""

import os
import pathlib
import shutil
import subprocess

from cffi import FFI

ROOT = pathlib.Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
CDEF_DIR = pathlib.Path(__file__).resolve().parent / "cdef"

# Areas in dependency order; each has a cdef file of the same name.
# bdev_rbd is always there: without librbd, module/bdev/rbd_stub answers -ENOTSUP.
CDEF_AREAS = ("log", "thread", "bdev", "bdev_modules", "bdev_rbd", "vhost", "workload")


def _have_pkg(name):
    if shutil.which("pkg-config") is None:
        return False
    return subprocess.run(["pkg-config", "--exists", name]).returncode == 0


def _optional_modules():
    """Backends that need a library this host may not have."""
    skipped = set()
    if not (pathlib.Path("/usr/include/rbd/librbd.h").exists()):
        skipped.add("rbd")
    return skipped


def _sources():
    skipped = _optional_modules()
    srcs = []
    for sub in ("lib", "module"):
        for path in sorted((NATIVE / sub).rglob("*.c")):
            parts = path.relative_to(NATIVE).parts
            if sub == "module" and len(parts) > 2 and parts[2] in skipped:
                continue
            srcs.append(str(path.relative_to(ROOT)))
    return srcs, skipped


def _include_dirs():
    dirs = [NATIVE / "include", NATIVE / "lib"]
    dirs += sorted(p for p in (NATIVE / "module" / "bdev").iterdir() if p.is_dir())
    return [str(d.relative_to(ROOT)) for d in dirs]


def _compile_args():
    args = ["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
            "-Wno-missing-field-initializers", "-fno-strict-aliasing"]
    if os.environ.get("SB_WERROR", os.environ.get("CI")):
        args.append("-Werror")
    if os.environ.get("SB_SANITIZE"):
        args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    return args


ffibuilder = FFI()
ffibuilder.cdef("\n".join((CDEF_DIR / f"{area}.h").read_text() for area in CDEF_AREAS))

_srcs, _skipped = _sources()
_libs = ["uring", "pthread"]
_defines = [("_GNU_SOURCE", None)]
if "rbd" not in _skipped:
    _libs += ["rbd", "rados"]
    _defines.append(("SB_HAVE_RBD", "1"))

ffibuilder.set_source(
    "spdk_backend._native",
    """
    #include "sb/log.h"
    #include "sb/thread.h"
    #include "sb/bdev.h"
    #include "sb/vhost.h"
    #include "sb/workload.h"
    #include "bdev_malloc.h"
    #include "bdev_null.h"
    #include "bdev_uring.h"
    #include "bdev_rbd.h"
    """,
    sources=_srcs,
    include_dirs=_include_dirs(),
    libraries=_libs,
    define_macros=_defines,
    extra_compile_args=_compile_args(),
    extra_link_args=["-fsanitize=address,undefined"] if os.environ.get("SB_SANITIZE") else [],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
