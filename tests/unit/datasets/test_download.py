"""Pinned downloads against a local HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time

import pytest

from brainalign.datasets import download
from brainalign.errors import ConfigError, DataError

PAYLOAD = b"netCDF-like bytes " * 5000


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``/good`` completely, ``/cut`` with fewer bytes than announced, ``/stall`` never."""

    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path == "/stall":
            time.sleep(3)
            return
        body = PAYLOAD if self.path == "/good" else PAYLOAD[:1000]
        if self.path not in ("/good", "/cut"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_fetch_verifies_and_renames(server, tmp_path, algorithm):
    dest = tmp_path / "sub" / "assy.nc"
    download.fetch(f"{server}/good", dest, {algorithm: hashlib.new(algorithm, PAYLOAD).hexdigest()})
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "sub" / "assy.nc.tmp").exists()


def test_existing_verified_file_is_kept(tmp_path):
    dest = tmp_path / "assy.nc"
    dest.write_bytes(PAYLOAD)
    download.fetch(f"http://127.0.0.1:{closed_port()}/good", dest, {"sha1": hashlib.sha1(PAYLOAD).hexdigest()})
    assert dest.read_bytes() == PAYLOAD


def test_wrong_checksum_names_both_digests_and_removes_the_file(server, tmp_path):
    dest = tmp_path / "assy.nc"
    with pytest.raises(DataError) as error:
        download.fetch(f"{server}/good", dest, {"sha1": "0" * 40})
    message = str(error.value)
    assert str(dest) in message and "0" * 40 in message and hashlib.sha1(PAYLOAD).hexdigest() in message
    assert "partial file was removed" in message
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_is_refused(server, tmp_path):
    with pytest.raises(DataError, match="cut short: received 1000 of 90000 bytes"):
        download.fetch(f"{server}/cut", tmp_path / "assy.nc", {"sha1": hashlib.sha1(PAYLOAD).hexdigest()})
    assert list(tmp_path.iterdir()) == []


def test_no_network_fails_fast_with_what_to_do(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/assy.nc"
    dest = tmp_path / "assy.nc"
    with pytest.raises(DataError, match=r"could not download .* \(\[Errno \d+\] Connection refused\)") as error:
        download.fetch(url, dest, {"sha1": "a" * 40}, timeout=2)
    message = str(error.value)
    assert f"from {url}" in message and f"put it at {dest}" in message and "a" * 40 in message
    assert list(tmp_path.iterdir()) == []


def test_stalled_server_times_out(server, tmp_path):
    with pytest.raises(DataError, match=r"could not download .*/stall \(timed out\)"):
        download.fetch(f"{server}/stall", tmp_path / "assy.nc", {"sha1": "a" * 40}, timeout=0.5)


@pytest.mark.parametrize("checksum", [{}, {"md5": "x"}, {"sha1": "a", "sha256": "b"}])
def test_checksum_must_be_one_supported_digest(tmp_path, checksum):
    with pytest.raises(ConfigError, match="exactly one checksum"):
        download.fetch("http://127.0.0.1:1/x", tmp_path / "x", checksum)


def test_missing_files_message_for_pinned_and_user_supplied_data():
    pereira = {
        "reader": "pereira2018",
        "files": {"assembly": "resources/downloads/pereira2018/assy_Pereira2018_language.nc"},
        "download": {
            "assembly": {
                "url": "https://brainscore-storage.s3.amazonaws.com/brainscore-language/assy_Pereira2018_language.nc",
                "sha1": "f8434b4022f5b2c862f0ff2854d5b3f5f2a7fb96",
            }
        },
    }
    message = download.missing_files_message("pereira2018", pereira)
    assert "files.assembly = resources/downloads/pereira2018/assy_Pereira2018_language.nc" in message
    assert "https://brainscore-storage.s3.amazonaws.com/brainscore-language/assy_Pereira2018_language.nc" in message
    assert "sha1 f8434b4022f5b2c862f0ff2854d5b3f5f2a7fb96" in message
    wehbe = download.missing_files_message("wehbe2014", {"reader": "wehbe2014", "files": {"folder": "my/hp"}})
    for needed in (
        "files.folder (now my/hp)",
        "data_subject_{F,H,I,J,K,L,M,N}.npy",
        "time_fmri.npy",
        "runs_fmri.npy",
        "time_words_fmri.npy",
        "words_fmri.npy",
        "files.roi_masks",
        "subject_{1..8}.mat",
        "files.cmu_folder",
    ):
        assert needed in wehbe
