"""llama.cpp's own server (`llama-server`), built once from the source llama-cpp-python vendors.

llama-cpp-python's server decodes one request at a time, so k chains are written one after
another. llama.cpp's `llama-server` decodes parallel slots in one batch (continuous batching),
which on a CPU multiplies aggregate tokens/s (docs/embedded.md has the table). No binary of it
installs from PyPI under a licence magicore can ship, and downloading one from GitHub fails on
machines that reach only the package registries, so it is compiled here, once, from exactly the
llama.cpp source the installed llama-cpp-python was built from (its sdist, MIT): same GGUF
support, no new download source. The binary goes into the per-user cache.

Order of choice: $MAGICORE_LLAMA_SERVER (a path to your own build), else the cached build for
the installed llama-cpp-python version, else build it (a few minutes; `magicore setup` does it
ahead of time). Setting MAGICORE_LLAMA_SERVER=off keeps llama-cpp-python's server.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from magicore.agents.weights import cache_dir
from magicore.tools.errors import SetupError

ENV_VAR = "MAGICORE_LLAMA_SERVER"
SDIST = "llama-cpp-python"


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        raise SetupError("the embedded model needs llama-cpp-python; run: pip install 'magicore[embedded]'") from None


def cached_binary() -> Path:
    return cache_dir() / "bin" / f"llama-server-{llama_cpp_version()}"


def disabled() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() in ("off", "0", "no", "false")


def find_binary() -> Path | None:
    """The llama-server to use, or None when none is built (or it is switched off)."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if disabled():
        return None
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SetupError(f"{ENV_VAR}={configured} is not an executable file")
        return path
    path = cached_binary()
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _run(command: list[str], cwd: Path, log: Path) -> None:
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(command) + "\n").encode())
        out.flush()
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise SetupError(f"building llama-server failed at '{command[0]} {command[1]}': {tail[0]} (log: {log})")


def _cmake() -> str:
    found = shutil.which("cmake") or shutil.which("cmake", path=str(Path(sys.executable).parent))
    if not found:
        raise SetupError("building llama-server needs cmake: pip install cmake (or apt-get install cmake)")
    return found


def _extract_llama_cpp(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
        if not members:
            raise SetupError(f"{sdist.name} carries no vendor/llama.cpp source")
        tar.extractall(into, members=members, filter="data")
    (source,) = into.glob("*/vendor/llama.cpp")
    return source


def build(*, jobs: int | None = None, echo=print) -> Path:
    """Compile llama-server from the installed llama-cpp-python version's sdist into the cache."""
    from filelock import FileLock

    version = llama_cpp_version()
    target = cached_binary()
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.parent / f"llama-server-{version}.build.log"
    with FileLock(str(target) + ".lock", timeout=3600):
        if target.is_file():
            return target
        cmake = _cmake()
        log.write_text("")
        echo(f"magicore: building llama.cpp's server from the llama-cpp-python {version} source "
             f"(once, a few minutes; log: {log})")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="magicore-llama-server-") as work:
            work = Path(work)
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                  "-d", str(work), f"{SDIST}=={version}"], work, log)  # fmt: skip
            sdists = list(work.glob("llama_cpp_python-*.tar.gz"))
            if not sdists:
                raise SetupError(f"pip did not download the {SDIST} {version} source (log: {log})")
            source = _extract_llama_cpp(sdists[0], work / "src")
            build_dir = work / "build"
            _run([cmake, "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                  "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                  "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                  "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON"], work, log)  # fmt: skip
            _run([cmake, "--build", str(build_dir), "--target", "llama-server",
                  "-j", str(jobs or os.cpu_count() or 1)], work, log)  # fmt: skip
            built = build_dir / "bin" / "llama-server"
            if not built.is_file():
                raise SetupError(f"the build finished without bin/llama-server (log: {log})")
            tmp = target.with_name(target.name + ".partial")
            shutil.copy2(built, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        echo(f"magicore: llama-server is ready at {target}")
    return target
