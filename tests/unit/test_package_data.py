"""An installed (not editable) package validates a config and finds the published scores on its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import yaml
from pathlib import Path
import brainalign
from brainalign.config import validate_config
from brainalign.analysis.published import published_scores
assert "site" in brainalign.__file__ or "installed" in brainalign.__file__, brainalign.__file__
config = validate_config(yaml.safe_load(Path({config!r}).read_text()))
print(len(config["models"]), len(published_scores("brain")))
"""


def test_a_wheel_install_carries_the_schema_and_the_published_scores(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "installed"
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        str(REPO),
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(wheels),
    ]
    subprocess.run(build, check=True, capture_output=True, text=True)
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "-q",
        "--target",
        str(target),
        *map(str, wheels.glob("*.whl")),
    ]
    subprocess.run(install, check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    completed = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(target)!r})\n" + CHECK.format(config=str(REPO / "config.yaml")),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    n_models, n_published = map(int, completed.stdout.split())
    assert n_models > 25 and n_published > 0
