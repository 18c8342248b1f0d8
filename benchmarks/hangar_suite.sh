#!/usr/bin/env bash
# Run Hangar 0.5.2's own test suite (8,360 tests at that tag) on numpy 2.4.6 with OUR shim,
# hangar_pipe.hangar.compat, applied before hangar is imported. From the repo root:
#
#     bash benchmarks/hangar_suite.sh [extra pytest args]
#
# Extra args go to pytest, which runs inside benchmarks/.work/hangar-suite/ (so paths are
# relative to it, e.g. tests/test_cli.py; with none it runs all of tests/). Serial run; takes
# several minutes. The full pytest output is kept in benchmarks/.work/hangar-suite.log.
# PYTHON picks the interpreter the venv is made from (default python3; the pins are for 3.11).
# Exit code: pytest's (a setup step that fails exits non-zero before pytest runs).
#
# What it does (all under benchmarks/.work/, which git ignores):
#   1. venv at benchmarks/.work/hangar-suite-venv (reused when present);
#   2. installs the pins from shared/notes/hangar-compat.md, plus pyyaml (hangar_pipe/__init__.py
#      needs it to import hangar_pipe.hangar.compat) and this project with `pip install --no-deps -e .`;
#   3. downloads the hangar 0.5.2 sdist and unpacks its tests/ into benchmarks/.work/hangar-suite/;
#   4. a .pth file in the venv applies hangar_pipe.hangar.compat's patch_protobuf() + patch_numpy() at
#      interpreter start-up; benchmarks/hangar_suite_conftest.py becomes the suite's root conftest
#      (checks the shim ran first, adds np.int for Hangar's tests only, handles missing TensorFlow);
#   5. runs pytest serially and prints its summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
WORK="$REPO/benchmarks/.work"
VENV="$WORK/hangar-suite-venv"
SUITE="$WORK/hangar-suite"
SDIST_DIR="$WORK/hangar-sdist"
VPY="$VENV/bin/python"
LOG="$WORK/hangar-suite.log"
start=$SECONDS

say() { printf '[hangar_suite] %s\n' "$*" >&2; }

# --- 1. virtualenv ---------------------------------------------------------------------------------
mkdir -p "$WORK"
if [[ -x "$VPY" ]]; then
    say "reusing $VENV"
else
    say "creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Named zz_* so site.py runs it after __editable__*.pth (which makes hangar_pipe importable).
PTH="$SITE/zz_hangar_suite_shim.pth"
rm -f "$PTH"  # keep pip itself free of the shim while installing; written again in step 4

# --- 2. packages -----------------------------------------------------------------------------------
# torch==2.13.0 is pinned explicitly so pip can never pick another torch; on this machine it
# resolves to the local CPU wheel (2.13.0+cpu, via pip's find-links).
say "installing packages (quick when already satisfied)"
"$VPY" -m pip install --quiet \
    hangar==0.5.2 numpy==2.4.6 protobuf==3.20.3 "setuptools<82" "lmdb<2" click==7.1.2 \
    pytest==7.4.4 hypothesis pretend pytest-xdist torch==2.13.0 "pyyaml>=6"
"$VPY" -m pip install --quiet --no-deps -e "$REPO"
torch_version="$("$VPY" -c 'from importlib.metadata import version; print(version("torch"))')"
if [[ "$torch_version" != 2.13.0 && "$torch_version" != 2.13.0+* ]]; then
    say "torch $torch_version installed, expected 2.13.0: refusing to go on"
    exit 2
fi

# --- 3. Hangar's test suite from its sdist ---------------------------------------------------------
sdist="$SDIST_DIR/hangar-0.5.2.tar.gz"
if [[ ! -f "$sdist" ]]; then
    say "downloading the hangar 0.5.2 sdist"
    "$VPY" -m pip download --quiet --no-deps --no-binary :all: hangar==0.5.2 -d "$SDIST_DIR"
fi
rm -rf "$SUITE"  # always start from the pristine tests/ (also drops old .hypothesis/ data)
mkdir -p "$SUITE"
tar -xzf "$sdist" -C "$SUITE" --strip-components=1 hangar-0.5.2/tests
# Hangar's own [tool:pytest] (in its setup.cfg) minus -ra/--strict; having an ini file here also
# stops pytest from walking up to this project's pyproject.toml and taking its config.
cat >"$SUITE/pytest.ini" <<'EOF'
# Written by benchmarks/hangar_suite.sh: the test-file patterns from Hangar 0.5.2's setup.cfg.
[pytest]
python_files = test_*.py *_test.py tests.py
EOF
cp "$REPO/benchmarks/hangar_suite_conftest.py" "$SUITE/conftest.py"

# --- 4. our shim, before anything imports hangar ---------------------------------------------------
# A .pth line starting with "import" is executed by site.py at every start-up of the venv's python.
# It calls our module; nothing of the shim is copied here.
printf '%s\n' \
    '# Written by benchmarks/hangar_suite.sh: apply hangar_pipe.hangar.compat before anything imports hangar.' \
    'import hangar_pipe.hangar.compat as c; c.patch_protobuf(); c.patch_numpy()' >"$PTH"

"$VPY" - <<'EOF' >&2
import sys
from importlib.metadata import version

assert "hangar_pipe.hangar.compat" in sys.modules, "the .pth did not import hangar_pipe.hangar.compat"
assert "hangar" not in sys.modules, "hangar was imported at start-up, before/with the shim"
import numpy as np
import hangar  # noqa: F401  - must import cleanly with the shim

names = ["numpy", "hangar", "protobuf", "lmdb", "torch", "setuptools", "click", "pytest", "hypothesis"]
print("[hangar_suite] python " + sys.version.split()[0] + ", "
      + ", ".join(f"{n} {version(n)}" for n in names))
EOF

# --- 5. the suite, serially ------------------------------------------------------------------------
say "running Hangar's suite serially (log: ${LOG#"$REPO"/})"
cd "$SUITE"
set +e
# No path given: pytest collects from here, i.e. tests/. --disable-warnings only hides the long
# warnings summary (Hangar's protobuf code and pkg_resources); the count stays in the summary line.
"$VPY" -m pytest -q -p no:cacheprovider -rfE --disable-warnings "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
summary="$(grep -E ' in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$LOG" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//')"
echo
echo "hangar suite: ${summary:-no pytest summary line (see $LOG)}"
echo "hangar suite: exit code $rc, wall time $((SECONDS - start)) s (setup included)"
exit "$rc"
