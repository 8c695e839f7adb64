#!/usr/bin/env bash
# Mutation testing (mutmut 3.8, the `dev` extra) of the core modules, each against its fast relevant tests.
#
#   benchmarks/mutation.sh                     # all: chunking metrics audio separator checkpoints
#   benchmarks/mutation.sh chunking metrics    # some
#   JOBS=2 MUTATION_DIR=/tmp/mut benchmarks/mutation.sh audio
#
# Each module runs in its own copy of the tree under $MUTATION_DIR (default /tmp/mossep-mutation/<module>;
# mutmut writes its mutants/ folder there, never in the repository), niced, with $JOBS mutants at a time
# (default 1: the machine is shared). Prints and saves <dir>/survivors.txt and a score line per module:
#   module: killed/total (score %), survived N, timeout N, suspicious N, no tests N
# Results per module and the reasoning for each equivalent mutant: benchmarks/README.md, "Mutation testing".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="$root/.venv/bin/python"
mutmut="$root/.venv/bin/mutmut"
[ -x "$mutmut" ] || { echo "mutmut is not installed: .venv/bin/pip install -e '.[dev]'" >&2; exit 1; }
base="${MUTATION_DIR:-/tmp/mossep-mutation}"
jobs="${JOBS:-1}"

# module -> the test files that exercise it quickly
declare -A TESTS=(
  [chunking]="tests/test_chunking.py tests/test_stitching_values.py tests/test_three_talkers.py"
  [metrics]="tests/test_metrics.py tests/test_metrics_values.py"
  [audio]="tests/test_audio.py tests/test_audio_values.py tests/test_file_paths.py tests/test_bad_audio.py tests/test_full_disk.py tests/test_properties.py"
  [separator]="tests/test_separator.py tests/test_separator_values.py tests/test_batched_forward.py tests/test_file_paths.py tests/test_ensemble.py tests/test_postfilter.py tests/test_hum.py tests/test_cli_raw.py tests/test_solo.py tests/test_tracking.py"
  [checkpoints]="tests/test_checkpoints.py tests/test_checkpoint_values.py tests/test_conformance_mossformer.py tests/test_conformance_mossformer2.py tests/test_conformance_mossformer2_formats.py tests/test_hostile_checkpoints.py tests/test_cli_models.py"
)
# tests of those files left out (slow, and exercising other modules): pytest -k expressions
declare -A DESELECT=(
  [chunking]="not evaluate and not train"
  [separator]="not kit and not default_model_t and not cli_json"
)
declare -A SOURCES=(
  [chunking]="src/mossep/chunking.py" [metrics]="src/mossep/metrics.py" [audio]="src/mossep/audio.py"
  [separator]="src/mossep/separator.py" [checkpoints]="src/mossep/checkpoints/*.py"
)
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(chunking metrics audio separator checkpoints)

for mod in "${modules[@]}"; do
  [ -n "${TESTS[$mod]:-}" ] || { echo "unknown module $mod (chunking metrics audio separator checkpoints)" >&2; exit 2; }
  work="$base/$mod"
  rm -rf "$work" && mkdir -p "$work"
  # a copy of what the tests need; the package is mutated whole-folder so that `import mossep` finds the copy
  cp -r "$root/src" "$root/tests" "$root/weights" "$root/examples" "$work/"
  find "$work" -name __pycache__ -prune -exec rm -rf {} +
  # the project's pytest settings (markers, -m 'not slow'), without anything else of pyproject.toml
  "$py" - "$root/pyproject.toml" "$work/pytest.ini" <<'PY'
import sys, tomllib
opts = tomllib.load(open(sys.argv[1], "rb"))["tool"]["pytest"]["ini_options"]
with open(sys.argv[2], "w") as f:
    f.write("[pytest]\n")
    f.write("addopts = %s\n" % opts.get("addopts", ""))
    f.write("markers =\n" + "".join("    %s\n" % m for m in opts.get("markers", [])))
PY
  # mutate only this module's files: the rest of the package is copied unmutated, so `import mossep` finds the copy
  {
    echo "[mutmut]"
    echo "source_paths = src/"
    echo "only_mutate ="; for f in ${SOURCES[$mod]}; do echo "    $f"; done
    echo "pytest_add_cli_args_test_selection ="; for t in ${TESTS[$mod]}; do [ -f "$work/$t" ] && echo "    $t"; done
    echo "also_copy ="; echo "    pytest.ini"; echo "    weights/"; echo "    examples/"
    if [ -n "${DESELECT[$mod]:-}" ]; then echo "pytest_add_cli_args ="; echo "    -k"; echo "    ${DESELECT[$mod]}"; fi
    echo "use_git_change_detection = false"
    [ -z "${DEBUG:-}" ] || echo "debug = true"
  } > "$work/setup.cfg"
  echo "== $mod: mutating ${SOURCES[$mod]} against ${TESTS[$mod]}"
  (cd "$work" && OMP_NUM_THREADS=1 nice -n 15 "$mutmut" run --max-children "$jobs" > run.log 2>&1) || {
    echo "$mod: mutmut failed, see $work/run.log" >&2; tail -20 "$work/run.log" >&2; continue; }
  (cd "$work" && "$mutmut" results --all true > results.txt 2>&1 || true)
  grep -E ': (survived|no tests|suspicious|timeout)$' "$work/results.txt" > "$work/survivors.txt" || true
  "$py" - "$mod" "$work/results.txt" <<'PY'
import collections, sys
mod, path = sys.argv[1], sys.argv[2]
c = collections.Counter(line.rsplit(": ", 1)[1].strip() for line in open(path) if ": " in line)
total = sum(c.values())
killed = c["killed"]
print(f"{mod}: {killed}/{total} killed ({100 * killed / max(total, 1):.1f} %), survived {c['survived']}, "
      f"timeout {c['timeout']}, suspicious {c['suspicious']}, no tests {c['no tests']}")
PY
done
