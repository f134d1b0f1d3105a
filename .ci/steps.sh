#!/usr/bin/env bash
# Every CI step, runnable here exactly as .github/workflows/ci.yml runs it:
#   .ci/steps.sh install|lint|test|repro|results|report|mutation <base-rev>
# install, lint, test and repro run in the repo root; results and report run in
# $JAXPIPE_WORKSPACE (default: the repo root). .ci/run runs install to repro from scratch.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

diff_md() {  # `dvc metrics|params diff --md <base>`, or a line saying nothing changed
  local table
  table="$(dvc "$1" diff --md "$2")"
  if [ "$(printf '%s\n' "$table" | grep -c '^| ')" -le 1 ]; then
    echo "No change."
  else
    printf '%s\n' "$table"
  fi
}

step="${1:?usage: .ci/steps.sh install|lint|test|repro|results|report|mutation <base-rev>}"
shift

case "$step" in
  install)  # README: set-up, into the active Python (a venv, or CI's setup-python)
    python -m pip install --quiet --upgrade pip
    pip install --quiet -c constraints.txt -e '.[dev]'
    ;;
  lint)  # code, then the workflow itself against GitHub's schema (vendored: offline)
    ruff check .
    for script in .ci/run .ci/steps.sh; do bash -n "$script"; done
    check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml
    if command -v actionlint >/dev/null; then
      actionlint .github/workflows/ci.yml
    else
      echo "actionlint not installed: workflow checked against the schema only"
    fi
    ;;
  test)  # README: tests
    pytest
    ;;
  repro)  # docs/reproducibility.md: the check, same machine then on one core (small profile),
          # its first run against checks/outputs.yaml (the committed record, another CPU's maybe)
    if [ -d ../shared/datasets ]; then
      JAXPIPE_MIRROR="$(cd ../shared/datasets && pwd)"
      export JAXPIPE_MIRROR
    fi
    jaxpipe-repro-check --cross cores=1
    ;;
  results)  # this branch's outputs: from the DVC remote when it has them, else computed
    cd "${JAXPIPE_WORKSPACE:-$ROOT}"
    if dvc remote default >/dev/null 2>&1; then
      dvc repro --pull
    else
      dvc repro
    fi
    ;;
  report)  # metrics and params diff against <base>, plots as images and as an HTML diff
    base="${1:?usage: .ci/steps.sh report <base-rev>}"
    cd "${JAXPIPE_WORKSPACE:-$ROOT}"
    out="${REPORT_DIR:-$PWD/ci-report}"
    summary="${GITHUB_STEP_SUMMARY:-$out/summary.md}"
    mkdir -p "$out"
    {
      echo "## Software against \`environment.yaml\`"
      echo
      echo '```text'
      jaxpipe env 2>&1 || true  # a stage that differs is named here; `dvc repro` refuses it
      echo '```'
      echo
      echo "## Metrics against \`$base\`"
      echo
      diff_md metrics "$base"
      echo
      echo "## Params against \`$base\`"
      echo
      diff_md params "$base"
      echo
    } >>"$summary"
    dvc plots diff "$base" --out "$out/plots-diff" >/dev/null
    if jaxpipe plots --help >/dev/null 2>&1; then  # static PNGs, rendered offline
      jaxpipe plots --format png --out "$out/plots"
    fi
    {
      echo "## Plots"
      echo
      echo "In the \`ci-report\` artifact: \`plots-diff/index.html\` (this branch against"
      echo "\`$base\`, one page)$( [ -d "$out/plots" ] && echo " and \`plots/*.png\`:")"
      if [ -d "$out/plots" ]; then
        for png in "$out"/plots/*.png; do echo "- \`$(basename "$png")\`"; done
      fi
    } >>"$summary"
    echo "report written to $summary and $out"
    ;;
  mutation)  # the mutation score of the library modules this change touched (mutmut)
    base="${1:?usage: .ci/steps.sh mutation <base-rev>}"
    mapfile -t modules < <(git diff --name-only --diff-filter=AM "$base"...HEAD -- \
      'src/jaxpipe/*.py' | sed 's|^src/jaxpipe/||')
    if [ "${#modules[@]}" -eq 0 ]; then
      echo "no module of src/jaxpipe changed against $base: nothing to mutate"
    else
      python mutation/check.py --modules "${modules[@]}"
    fi
    ;;
  *)
    echo "unknown step '$step': install|lint|test|repro|results|report|mutation <base-rev>" >&2
    exit 2
    ;;
esac
