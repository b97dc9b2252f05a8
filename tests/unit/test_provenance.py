"""Provenance sidecars: what run_step records, how it is read back, and staleness checks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import brainalign
from brainalign import io, provenance
from brainalign.errors import DataError
from brainalign.workflow import run_step


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FakeNamedList(list):
    """The parts of Snakemake's Namedlist that run_step uses: a list with named items."""

    def __init__(self, items=(), **named):
        super().__init__(list(items) + [v for v in named.values() if v not in items])
        self._named = named
        for key, value in named.items():
            setattr(self, key, value)

    def items(self):
        return self._named.items()


def fake_job(tmp_path: Path, output: Path, inputs: list[Path]) -> SimpleNamespace:
    return SimpleNamespace(
        rule="fit_encoding",
        input=FakeNamedList(inputs),
        output=FakeNamedList([str(output)]),
        log=FakeNamedList([str(tmp_path / "logs" / "job.log")]),
        params=FakeNamedList(options={"alphas": [1.0, 10.0]}, layer="2"),
        wildcards=FakeNamedList(protocol="aw2024", dataset="d", model="m", layer="2"),
        threads=1,
    )


@pytest.fixture()
def stimuli_file(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "stimulus_id": ["a", "b"],
            "context_group": ["g", "g"],
            "position": [0, 1],
            "text": ["one.", "two."],
            "cv_group": ["g", "g"],
            "partition": ["all", "all"],
        }
    )
    path = tmp_path / "results" / "stimuli" / "d.parquet"
    io.write_stimuli(path, frame, {"dataset": "d"})
    return path


def test_run_step_records_rule_params_and_checksums(tmp_path, stimuli_file):
    output = tmp_path / "results" / "scores" / "m.tsv"
    job = fake_job(tmp_path, output, [stimuli_file])
    run_step(job, io.write_tsv, path=output, frame=pd.DataFrame({"score": [0.5]}))

    record = json.loads(provenance.sidecar_path(output).read_text())
    assert record["rule"] == "fit_encoding"
    assert record["wildcards"] == {"protocol": "aw2024", "dataset": "d", "model": "m", "layer": "2"}
    assert record["params"] == {"options": {"alphas": [1.0, 10.0]}, "layer": "2"}
    assert record["package_version"] == brainalign.__version__
    assert record["inputs"][str(stimuli_file)]["sha256"] == sha256(stimuli_file)
    assert record["output"]["sha256"] == sha256(output)
    assert record["modules"]["brainalign.io"] == sha256(Path(io.__file__))
    assert not set(record["modules"]) & provenance.ORCHESTRATION_MODULES


def test_failed_job_leaves_no_record(tmp_path, stimuli_file):
    output = tmp_path / "results" / "scores" / "m.tsv"
    provenance.sidecar_path(output).parent.mkdir(parents=True)
    provenance.sidecar_path(output).write_text("{}")  # a record of an older output

    def failing(**_):
        raise DataError("planted failure")

    with pytest.raises(SystemExit):
        run_step(fake_job(tmp_path, output, [stimuli_file]), failing)
    assert not provenance.sidecar_path(output).exists()


def test_input_checksum_reused_only_while_file_unchanged(tmp_path, stimuli_file):
    output = tmp_path / "out.tsv"
    io.write_tsv(output, pd.DataFrame({"x": [1]}))
    stat = stimuli_file.stat()
    planted = {"output": {"sha256": "planted", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}}
    io.write_json(provenance.sidecar_path(stimuli_file), planted)
    assert provenance.file_record(stimuli_file)["sha256"] == "planted"

    os.utime(stimuli_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert provenance.file_record(stimuli_file)["sha256"] == sha256(stimuli_file)


def test_read_provenance_shows_sidecar_and_parquet_metadata(tmp_path, stimuli_file):
    provenance.record_job([stimuli_file], [], rule="prepare_stimuli", wildcards={"dataset": "d"}, params={})
    document = provenance.read_provenance(provenance.sidecar_path(stimuli_file))
    assert document["provenance"]["rule"] == "prepare_stimuli"
    assert document["parquet_metadata"]["stimuli_sha256"] == io.stimuli_checksum(stimuli_file)


def test_read_provenance_refuses_files_without_any(tmp_path):
    bare = tmp_path / "notes.txt"
    bare.write_text("hello")
    with pytest.raises(DataError, match="has no provenance"):
        provenance.read_provenance(bare)
    with pytest.raises(DataError, match="does not exist"):
        provenance.read_provenance(tmp_path / "missing.tsv")


def test_abbreviate_cuts_long_lists_only():
    document = {"short": [1, 2], "long": list(range(20)), "nested": {"ids": list("abcdefghij")}}
    short = provenance.abbreviate(document, max_items=3)
    assert short["short"] == [1, 2]
    assert short["long"] == [0, 1, 2, "... 20 items in all"]
    assert short["nested"]["ids"][-1] == "... 10 items in all"


def test_cli_prints_the_record(tmp_path, stimuli_file):
    provenance.record_job([stimuli_file], [], rule="prepare_stimuli", wildcards={"dataset": "d"}, params={"x": 1})
    completed = subprocess.run(
        [sys.executable, "-m", "brainalign.cli", "provenance", str(stimuli_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = json.loads(completed.stdout)
    assert printed["provenance"]["params"] == {"x": 1}
    assert printed["parquet_metadata"]["dataset"] == "d"


def _results_with_one_record(tmp_path: Path) -> tuple[Path, Path]:
    workdir = tmp_path / "run"
    result = workdir / "results" / "scores" / "m.tsv"
    io.write_tsv(result, pd.DataFrame({"score": np.arange(3.0)}))
    cwd = Path.cwd()
    os.chdir(workdir)  # the workflow records paths relative to its working directory
    try:
        provenance.record_job(["results/scores/m.tsv"], [], rule="score_model", wildcards={}, params={})
    finally:
        os.chdir(cwd)
    return workdir / "results", result


def _edit_record(result: Path, **changes) -> None:
    sidecar = provenance.sidecar_path(result)
    record = json.loads(sidecar.read_text())
    for key, value in changes.items():
        record[key] = value(record[key])
    sidecar.write_text(json.dumps(record))


def test_fresh_results_are_not_stale(tmp_path):
    results, _ = _results_with_one_record(tmp_path)
    assert provenance.stale_results(results) == []


def test_changed_module_makes_result_stale(tmp_path):
    results, result = _results_with_one_record(tmp_path)
    _edit_record(result, modules=lambda modules: {**modules, "brainalign.io": "0" * 64})
    (stale,) = provenance.stale_results(results)
    assert stale.path == str(result)
    assert stale.rule == "score_model"
    assert stale.reasons == ("module brainalign.io changed",)


def test_removed_module_and_other_version_make_result_stale(tmp_path):
    results, result = _results_with_one_record(tmp_path)
    _edit_record(
        result,
        modules=lambda modules: {**modules, "brainalign.gone": "0" * 64},
        package_version=lambda _: "0.0.1",
    )
    (stale,) = provenance.stale_results(results)
    assert set(stale.reasons) == {
        "module brainalign.gone removed",
        f"package version 0.0.1 -> {brainalign.__version__}",
    }


def test_edited_output_is_reported(tmp_path):
    results, result = _results_with_one_record(tmp_path)
    result.write_text("score\n42\n")
    (stale,) = provenance.stale_results(results)
    assert stale.reasons == ("output file modified after it was written",)


def test_cli_stale_lists_paths_for_forcerun(tmp_path):
    results, result = _results_with_one_record(tmp_path)
    _edit_record(result, modules=lambda modules: {**modules, "brainalign.io": "0" * 64})
    completed = subprocess.run(
        [sys.executable, "-m", "brainalign.cli", "provenance", "--stale", str(results), "--paths"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.split() == [str(result)]
