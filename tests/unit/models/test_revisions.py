"""Hub revisions resolved once and locked, against a fake hub client (never the network)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import huggingface_hub
import pytest
import yaml
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

from brainalign.cli import main
from brainalign.errors import ConfigError, ModelError
from brainalign.models import fetch
from brainalign.models.fetch import fetch_model
from brainalign.models.revisions import lock_config_revisions, read_lock

REPO = "org/tiny"
OLD, NEW = "a" * 40, "b" * 40


class FakeHub:
    """Branches pointing at commits; downloads write the commit they served into config.json."""

    def __init__(self):
        self.branches = {(REPO, "main"): OLD, (REPO, "v1"): OLD}
        self.commits = {OLD, NEW}
        self.gated = set()
        self.resolutions = 0

    @staticmethod
    def _error(kind, message):
        return kind(message, response=SimpleNamespace(headers={}, status_code=404, request=None))

    def _check(self, repo_id):
        if repo_id in self.gated:
            raise self._error(GatedRepoError, f"Access to model {repo_id} is restricted.")
        if not any(repo == repo_id for repo, _ in self.branches):
            raise self._error(RepositoryNotFoundError, f"Repository Not Found for url {repo_id}")

    def model_info(self, api, repo_id, revision=None, timeout=None, **_):
        self._check(repo_id)
        self.resolutions += 1
        if (repo_id, revision) not in self.branches:
            raise self._error(RevisionNotFoundError, f"Revision Not Found: {revision}")
        return SimpleNamespace(sha=self.branches[(repo_id, revision)])

    def snapshot_download(self, repo_id, revision, local_dir, **_):
        self._check(repo_id)
        if revision not in self.commits:
            raise self._error(RevisionNotFoundError, f"Invalid rev id: {revision}")
        (local_dir / "config.json").write_text(json.dumps({"served": revision}))


@pytest.fixture()
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda api, *a, **k: fake.model_info(api, *a, **k))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(fetch, "_check_reachable", lambda endpoint: None)
    return fake


def hub_block(revision="main", hf_id=REPO):
    return {"source": {"type": "hub", "hf_id": hf_id, "revision": revision}}


def served(folder):
    return json.loads((folder / "config.json").read_text())["served"]


def test_branch_is_resolved_locked_and_recorded(hub, tmp_path):
    lock = tmp_path / "revisions.lock.yaml"
    fetch_model("tiny", hub_block(), tmp_path / "m" / "manifest.json", lock)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["revision"] == OLD and served(tmp_path / "m") == OLD
    assert read_lock(lock)["tiny"] == {**read_lock(lock)["tiny"], "hf_id": REPO, "requested": "main", "commit": OLD}


def test_a_moved_branch_does_not_change_a_locked_model(hub, tmp_path):
    lock = tmp_path / "revisions.lock.yaml"
    fetch_model("tiny", hub_block(), tmp_path / "first" / "manifest.json", lock)
    hub.branches[(REPO, "main")] = NEW  # the repository moves on
    fetch_model("tiny", hub_block(), tmp_path / "again" / "manifest.json", lock)
    assert served(tmp_path / "again") == OLD
    assert hub.resolutions == 1


def test_a_changed_request_is_resolved_again(hub, tmp_path):
    lock = tmp_path / "revisions.lock.yaml"
    fetch_model("tiny", hub_block(), tmp_path / "first" / "manifest.json", lock)
    hub.branches[(REPO, "v1")] = NEW
    fetch_model("tiny", hub_block("v1"), tmp_path / "again" / "manifest.json", lock)
    assert served(tmp_path / "again") == NEW and read_lock(lock)["tiny"]["requested"] == "v1"


def test_a_commit_in_the_config_is_used_without_resolution(hub, tmp_path):
    lock = tmp_path / "revisions.lock.yaml"
    fetch_model("tiny", hub_block(NEW), tmp_path / "m" / "manifest.json", lock)
    assert served(tmp_path / "m") == NEW and hub.resolutions == 0 and not lock.exists()


def test_a_locked_commit_that_no_longer_exists_names_the_model_and_the_lock(hub, tmp_path):
    lock = tmp_path / "revisions.lock.yaml"
    fetch_model("tiny", hub_block(), tmp_path / "first" / "manifest.json", lock)
    hub.commits.discard(OLD)  # history rewritten on the hub
    with pytest.raises(ModelError, match=r"model tiny: org/tiny@a{40}.*does not exist.*revisions\.lock\.yaml"):
        fetch_model("tiny", hub_block(), tmp_path / "again" / "manifest.json", lock)


def test_a_missing_branch_names_the_key_to_fix(hub, tmp_path):
    with pytest.raises(ModelError, match=r"model tiny: org/tiny@nope.*models\.tiny\.source\.revision"):
        fetch_model("tiny", hub_block("nope"), tmp_path / "m" / "manifest.json", tmp_path / "lock.yaml")


def test_a_gated_model_says_how_to_get_access(hub, tmp_path):
    hub.gated.add(REPO)
    with pytest.raises(ModelError, match=r"model tiny: .*gated: accept its license.*hf auth login"):
        fetch_model("tiny", hub_block(), tmp_path / "m" / "manifest.json", tmp_path / "lock.yaml")


def test_a_missing_repository_names_the_hf_id_key(hub, tmp_path):
    with pytest.raises(ModelError, match=r"models\.tiny\.source\.hf_id"):
        fetch_model("tiny", hub_block(hf_id="org/none"), tmp_path / "m" / "manifest.json", tmp_path / "lock.yaml")


def test_no_network_says_where_to_fetch(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ModelError, match=r"model tiny: .*cannot be reached.*node with internet.*fetch_model"):
        fetch_model("tiny", hub_block(), tmp_path / "m" / "manifest.json", tmp_path / "lock.yaml")
    assert not (tmp_path / "m" / "manifest.json").exists() and not (tmp_path / "lock.yaml").exists()


def test_an_empty_revision_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.tiny\.source\.revision.*main"):
        fetch_model("tiny", hub_block(""), tmp_path / "m" / "manifest.json", tmp_path / "lock.yaml")


CONFIG = """\
# models of a study
models:
  tiny:
    # the one we fetched
    source: {type: hub, hf_id: org/tiny, revision: main}
    kind: causal
  other:
    source:
      type: hub
      hf_id: org/other
      revision: main  # not fetched yet
  fixed:
    source: {type: hub, hf_id: org/fixed, revision: cccccccccccccccccccccccccccccccccccccccc}

protocols: {}
"""


def test_lock_revisions_writes_locked_commits_and_keeps_comments(hub, tmp_path, capsys):
    config, lock = tmp_path / "config.yaml", tmp_path / "revisions.lock.yaml"
    config.write_text(CONFIG)
    fetch_model("tiny", hub_block(), tmp_path / "m" / "manifest.json", lock)
    assert main(["lock-revisions", "--config", str(config), "--lock", str(lock)]) == 2
    edited = config.read_text()
    assert edited == CONFIG.replace("org/tiny, revision: main", f"org/tiny, revision: {OLD}")
    assert "other: no commit for org/other@main" in capsys.readouterr().err
    again = lock_config_revisions(config, lock, yaml.safe_load(edited)["models"])
    assert again["written"] == {} and list(again["unresolved"]) == ["other"] and config.read_text() == edited


def test_lock_revisions_resolve_locks_every_hub_model(hub, tmp_path):
    config, lock = tmp_path / "config.yaml", tmp_path / "revisions.lock.yaml"
    config.write_text(CONFIG.replace("org/other", REPO))
    assert main(["lock-revisions", "--config", str(config), "--lock", str(lock), "--resolve"]) == 0
    models = yaml.safe_load(config.read_text())["models"]
    assert [models[n]["source"]["revision"] for n in ("tiny", "other", "fixed")] == [OLD, OLD, "c" * 40]
