#!/usr/bin/env bash
# The paper's code (brain-score/language at commit 91c88b1) in its own virtual environment,
# never in the project's: it needs transformers 4.x and numpy 1.x.
#
#   bash tests/conformance/setup_reference.sh [VENV]     (default: .venv-aw2024ref)
#
# Reads the archive from ../shared/reference/brainscore-aw2024 (or BRAINALIGN_REFERENCE_ARCHIVE),
# checks its SHA-256, and installs it without dependencies on the versions that
# Brain-Score language 2.3 resolves (the archive's README beside it lists them).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${1:-.venv-aw2024ref}
archive=${BRAINALIGN_REFERENCE_ARCHIVE:-../shared/reference/brainscore-aw2024/brainscore-language-91c88b1.tar.gz}
sha256=aa44ac7c6e2ac1a8c566f708387aa6754cd75159419f57d2ffe8616bd62a0668
stamp="$venv/.reference-$sha256"
[ -f "$stamp" ] && exit 0
if [ ! -f "$archive" ]; then
    echo "setup_reference: $archive not found; set BRAINALIGN_REFERENCE_ARCHIVE to brainscore-language-91c88b1.tar.gz" >&2
    exit 1
fi
echo "$sha256  $archive" | sha256sum --check --quiet
test -x "$venv/bin/python" || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet torch==2.13.0 transformers==4.57.6 tokenizers==0.22.2 accelerate==1.15.0 \
    sentencepiece==0.2.3 brainscore-core==2.5.0 brainscore-brainio==1.1.0 numpy==1.26.4 pandas==2.3.3 \
    scikit-learn==1.9.1 xarray==2022.3.0 tqdm fire gensim joblib protobuf
source=$(mktemp -d)
tar -xzf "$archive" -C "$source"
"$venv/bin/python" -m pip install --quiet --no-deps "$source"/brainscore-language-aw2024
rm -rf "$source"
touch "$stamp"
