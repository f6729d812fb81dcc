#!/usr/bin/env bash
# The device check on a lent GPU machine, as one command (docs/speed.md, "On a lent GPU machine"): the machine has
# the image's packages and no network, so the wheels of what it lacks, the reference fixtures and a real clip travel
# in the ignored folder .carry/ (filled here beforehand by `python benchmarks/device_carry.py`). The wheels go into a
# target folder (nothing is installed into the image's environment), the checkout goes on the path as it is, and
# the check runs under a hard time limit, writing device_check.json / .md into $OUT (after every check, and on
# SIGTERM). Extra arguments go to device_check.py: `bash benchmarks/device_run.sh --sections compile` on a retry.
#
# Environment: OUT (required: the report's folder), VIDTOK_CARRY (default .carry), VIDTOK_SITE (where the wheels
# are installed, default /tmp/vidtok-site), VIDTOK_LIMIT_S (the hard limit, default 480 s: SIGTERM, then SIGKILL
# 20 s later).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
: "${OUT:?set OUT to the folder for the report}"
carry="${VIDTOK_CARRY:-.carry}"
site="${VIDTOK_SITE:-/tmp/vidtok-site}"
if ! compgen -G "$carry/wheels/*.whl" >/dev/null; then
    echo "device_run: no wheels in $carry/wheels: run python benchmarks/device_carry.py first and carry $carry" >&2
    exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$carry"/wheels/*.whl || exit 2
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
timeout -s TERM -k 20 "${VIDTOK_LIMIT_S:-480}" python3 benchmarks/device_check.py --out "$OUT" \
    --fixtures "$carry/fixtures" --media "$carry/media/example.mp4" "$@"
