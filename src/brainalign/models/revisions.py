"""Hub revisions: branch or tag names resolved once to commits, then locked.

A hub model's ``source.revision`` may be a 40-hex commit (used as is) or a branch or tag
(``main``, ``v1.0``). A name is resolved to its current commit the first time the model is
fetched, and the commit is written to the revision lock file (``revisions.lock.yaml`` in the
working directory). Every later fetch of that model reads the lock instead of the hub, so a
re-run never silently changes weights; ``brainalign lock-revisions`` writes the locked commits
into the config for publication.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from brainalign.errors import ConfigError, ModelError
from brainalign.io import write_text

REVISION_LOCK = "revisions.lock.yaml"
"""The lock file, relative to the working directory (beside the config)."""

COMMIT = re.compile(r"^[0-9a-f]{40}$")
LOCK_HEADER = (
    "# Hub commits resolved from the branch or tag names in the config, one entry per model.\n"
    "# fetch_model reads a model's commit from here instead of the hub, so its weights never change\n"
    "# silently. Delete an entry to resolve its name again; `brainalign lock-revisions` writes these\n"
    "# commits into the config.\n"
)


def is_commit(revision: str) -> bool:
    """Whether ``revision`` is a full 40-hex commit sha."""
    return bool(COMMIT.match(revision))


def requested_revision(name: str, source: Mapping[str, Any]) -> str:
    """Return the revision the config asks for (a commit, branch or tag name)."""
    revision = source.get("revision")
    if not isinstance(revision, str) or not revision.strip():
        raise ConfigError(
            f"models.{name}.source.revision is {revision!r}; give a branch or tag of {source.get('hf_id')} "
            "(e.g. `main`, resolved to its commit on the first fetch and locked) or a 40-character commit sha."
        )
    return revision.strip()


def read_lock(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read the lock file: model name -> ``{hf_id, requested, commit, resolved_at}`` ({} when absent)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        entries = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(
            f"{path} is not valid YAML ({error}). Fix it or delete it to resolve every revision again."
        ) from error
    if not isinstance(entries, dict) or not all(isinstance(e, dict) and "commit" in e for e in entries.values()):
        raise ConfigError(
            f"{path}: expected a mapping of model name -> {{hf_id, requested, commit}}. "
            "Fix it or delete it to resolve every revision again."
        )
    return entries


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock while parallel fetch jobs read-modify-write the lock file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".flock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_lock(path: Path, entries: Mapping[str, Mapping[str, Any]]) -> None:
    write_text(path, LOCK_HEADER + yaml.safe_dump(dict(sorted(entries.items())), sort_keys=True))


def locked_entry(name: str, source: Mapping[str, Any], entries: Mapping[str, Mapping[str, Any]]) -> dict | None:
    """The model's lock entry if it was resolved from the same repository and revision name."""
    entry = entries.get(name)
    if (
        entry
        and entry.get("hf_id") == source.get("hf_id")
        and entry.get("requested") == requested_revision(name, source)
    ):
        return dict(entry)
    return None


def resolve_on_hub(name: str, hf_id: str, revision: str, timeout: float) -> str:
    """Ask the hub for the commit a branch or tag points at now.

    Raises
    ------
    ModelError
        Naming the model and the fix, when the repository or revision does not exist, the
        model is gated, or the hub cannot be reached.
    """
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(hf_id, revision=revision, timeout=timeout).sha
    except Exception as error:  # the hub client raises many kinds; each ends in one message
        raise hub_error(name, hf_id, revision, error) from error


def hub_error(name: str, hf_id: str, revision: str, error: Exception) -> ModelError:
    """One message per failure kind, naming the model and the fix (gated is checked first: it is a kind of
    missing repository to the client)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    detail = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    if isinstance(error, GatedRepoError):
        fix = (
            f"{hf_id} is gated: accept its license on https://huggingface.co/{hf_id} with your account, then log in "
            "(`hf auth login`) or set HF_TOKEN, and rerun."
        )
    elif isinstance(error, RevisionNotFoundError):
        fix = (
            f"the revision {revision!r} does not exist (any more) in {hf_id}: set models.{name}.source.revision to an "
            f"existing branch, tag or commit, and delete the model's entry in {REVISION_LOCK} if it holds this commit."
        )
    elif isinstance(error, RepositoryNotFoundError):
        fix = (
            f"{hf_id} does not exist or is private: fix models.{name}.source.hf_id, or log in "
            "(`hf auth login`) if the repository is private."
        )
    else:
        fix = (
            "the hub cannot be reached from here: run the fetch step on a node with internet "
            f"(`snakemake --until fetch_model`), which locks the commit in {REVISION_LOCK}, then rerun here."
        )
    return ModelError(f"model {name}: {hf_id}@{revision}: {detail}. Fix: {fix}")


def pinned_commit(name: str, source: Mapping[str, Any], lock_path: str | Path, timeout: float) -> str:
    """Return the commit to download: the config's own commit, the locked one, or a fresh resolution (then locked)."""
    revision = requested_revision(name, source)
    if is_commit(revision):
        return revision
    lock_path = Path(lock_path)
    with _exclusive(lock_path):
        entries = read_lock(lock_path)
        entry = locked_entry(name, source, entries)
        if entry is not None:
            return entry["commit"]
        commit = resolve_on_hub(name, source["hf_id"], revision, timeout)
        entries[name] = {
            "hf_id": source["hf_id"],
            "requested": revision,
            "commit": commit,
            "resolved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_lock(lock_path, entries)
    return commit


def _model_line_ranges(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Line ranges of each model's block under the top-level ``models:`` key of a config file."""
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "models:"), None)
    if start is None:
        return {}
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ", "#", "\n")), len(lines))
    ranges, current = {}, None
    for i in range(start + 1, end):
        match = re.match(r"^  ([A-Za-z0-9][\w.\-]*):\s*(#.*)?$", lines[i])
        if match:
            if current:
                ranges[current[0]] = (current[1], i)
            current = (match.group(1), i)
    if current:
        ranges[current[0]] = (current[1], end)
    return ranges


def lock_config_revisions(config_path: str | Path, lock_path: str | Path, models: Mapping[str, Mapping]) -> dict:
    """Write the locked commits of hub models into the config file, keeping its comments.

    Parameters
    ----------
    config_path : path
        The config YAML to edit in place.
    lock_path : path
        The revision lock file.
    models : mapping
        The config's ``models`` section (parsed).

    Returns
    -------
    dict
        ``written`` (model -> commit) and ``unresolved`` (model -> reason).
    """
    config_path = Path(config_path)
    entries = read_lock(lock_path)
    lines = config_path.read_text().splitlines(keepends=True)
    ranges = _model_line_ranges(lines)
    written, unresolved = {}, {}
    for name, block in models.items():
        source = block.get("source") or {}
        if source.get("type", "hub") != "hub" or is_commit(str(source.get("revision") or "")):
            continue
        entry = locked_entry(name, source, entries)
        if entry is None:
            unresolved[name] = (
                f"no commit for {source.get('hf_id')}@{source.get('revision')} in {lock_path} (not fetched yet)"
            )
            continue
        if name not in ranges:
            unresolved[name] = f"its block was not found under `models:` in {config_path}"
            continue
        first, last = ranges[name]
        pattern = re.compile(r"(revision:\s*)([^,}\s#]+)")
        hits = [i for i in range(first, last) if pattern.search(lines[i])]
        if len(hits) != 1:
            unresolved[name] = f"expected one `revision:` line in its block of {config_path}, found {len(hits)}"
            continue
        lines[hits[0]] = pattern.sub(lambda m, commit=entry["commit"]: m.group(1) + commit, lines[hits[0]], count=1)
        written[name] = entry["commit"]
    edited = "".join(lines)
    parsed = yaml.safe_load(edited)
    wrong = [n for n, c in written.items() if parsed["models"][n]["source"]["revision"] != c]
    if wrong:
        raise ConfigError(
            f"{config_path}: editing the revisions of {wrong} would not give the locked commits; left unchanged."
        )
    write_text(config_path, edited)
    return {"written": written, "unresolved": unresolved}
