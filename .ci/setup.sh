# System set-up for CI, sourced by .ci/run (and by tests/test_ci.py, which calls it with stand-ins).
#
# The browser test (tests/test_report_browser.py) and the SLURM tests (tests/test_slurm.py) skip, with
# their reason, when Chromium or a SLURM cluster is missing: right on a developer's machine. In CI they
# are what the run exists to test, so under CI=true a failure to install Chromium or to start the
# one-node cluster fails the run here, with its reason, instead of turning into skipped tests.
#
#   BENCH_SLURM_CLUSTER   the script that starts the cluster (default tests/slurm/cluster.sh)

setup_failed() {  # setup_failed WHAT SKIPS: fatal under CI=true, a note elsewhere
  if [ "${CI:-}" = "true" ]; then
    echo "error: $1. CI=true, so $2 must run, not skip: fix the set-up (or run without CI=true to let them skip)." >&2
    return 1
  fi
  echo "$1: $2 will skip"
}

install_chromium() {
  if command -v chromium >/dev/null 2>&1; then return 0; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    setup_failed "chromium is not installed and there is no apt-get to install it" "the HTML rendering test"
    return
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || setup_failed "chromium could not be installed (apt-get install chromium failed)" "the HTML rendering test"
}

start_slurm() {
  if [ "$(id -u)" != 0 ]; then
    setup_failed "no SLURM cluster: tests/slurm/cluster.sh start needs root" "the SLURM tests"
    return
  fi
  bash "${BENCH_SLURM_CLUSTER:-tests/slurm/cluster.sh}" start \
    || setup_failed "the one-node SLURM cluster did not start (see the lines above)" "the SLURM tests"
}

system_setup() {
  echo "== system packages the tests use (a headless browser for the HTML report)"
  install_chromium || return 1
  echo "== a one-node SLURM cluster for the SLURM tests (tests/slurm/cluster.sh: slurm-wlm + munge)"
  start_slurm || return 1
}
