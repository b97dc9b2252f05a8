"""Glue between Snakemake and the library: what scripts share, and facts the rules need.

Workflow scripts stay thin: they call :func:`run_step` with a library function and the
job's paths and parameters. ``run_step`` sends logging to the job's log file, limits BLAS
threads to the job's share, turns a :class:`BrainalignError` into one clear line, and
records each output's provenance (:mod:`brainalign.provenance`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from brainalign.errors import BrainalignError

MODEL_RUNTIME_KEYS = (
    "source",
    "kind",
    "n_layers",
    "dtype",
    "trust_remote_code",
    "max_length",
    "prompt_policy",
    "seq2seq_layers",
    "aw2024_module",
)
"""Model keys that change a model's activations or surprisal (metadata keys do not)."""

USER_FILE_HINTS = {
    "wehbe2014": (
        "the Toneva-preprocessed Harry Potter fMRI folder (fMRI/data_subject_{F,H,I,J,K,L,M,N}.npy, "
        "time_fmri.npy, runs_fmri.npy, time_words_fmri.npy, words_fmri.npy) from the authors of "
        "Toneva & Wehbe (2019), or the CMU subject_{1..8}.mat files of Wehbe et al. (2014)"
    ),
}


def missing_user_files_warning(config: Mapping[str, Any], datasets: Iterable[str]) -> list[str]:
    """Return one warning per dataset whose user-provided files (no download, not generated) are absent."""
    warnings = []
    for name in datasets:
        block = config["datasets"][name]
        if block["demo"] or block.get("download") or block.get("rehearsal"):
            continue
        missing = [path for path in block["files"].values() if path and not Path(path).exists()]
        if missing:
            hint = USER_FILE_HINTS.get(block["reader"], "the dataset's files")
            warnings.append(
                f"dataset {name}: {', '.join(missing)} not found. Get {hint} and put them there "
                f"(or set datasets.{name}.files in the config); its jobs are planned but will stop "
                "at download_dataset until the files exist."
            )
    return warnings


def gpu_device_visible(dev: str | Path = "/dev") -> bool:
    """Whether this machine shows a GPU to CUDA programs, read without importing PyTorch.

    True when an NVIDIA (``nvidia0``, ``nvidia1``, ...) or AMD ROCm (``kfd``) device node
    exists under ``dev`` and ``CUDA_VISIBLE_DEVICES`` does not hide every device. The
    workflow plans with it (how many model jobs may run at once on this machine); jobs still
    pick their device with PyTorch itself.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return any(Path(dev).glob("nvidia[0-9]*")) or (Path(dev) / "kfd").exists()


def configure_logging(log_path: str | Path | None) -> None:
    """Log INFO and above to the job's log file (and warnings to stderr)."""
    handlers: list[logging.Handler] = []
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING)
    handlers.append(stderr)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def run_step(snakemake: Any, function: Callable[..., Any], **kwargs: Any) -> Any:
    """Run one library function for a Snakemake job with logging, thread limits and clear errors.

    Sidecars of the job's outputs are removed first and written again only once the function
    has returned, so a failed or killed job never leaves a record describing an older file.
    """
    from threadpoolctl import threadpool_limits

    from brainalign.provenance import discard_records, record_job

    log = snakemake.log[0] if len(snakemake.log) else None
    configure_logging(log)
    logger = logging.getLogger(f"brainalign.{snakemake.rule}")
    logger.info("rule %s, wildcards %s", snakemake.rule, dict(snakemake.wildcards.items()))
    outputs = list(snakemake.output)
    discard_records(outputs)
    threads = max(1, int(snakemake.threads))
    if "torch" in sys.modules:  # torch keeps its own intra-op pool
        sys.modules["torch"].set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            result = function(**kwargs)
    except BrainalignError as error:
        logger.error("%s", error)
        print(f"brainalign {snakemake.rule}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        logger.exception("unexpected failure (a bug: please report it with this log)")
        raise
    record_job(
        outputs,
        inputs=list(snakemake.input),
        rule=snakemake.rule,
        wildcards=dict(snakemake.wildcards.items()),
        params=dict(snakemake.params.items()),
    )
    return result
