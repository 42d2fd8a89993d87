#!/usr/bin/env bash
# Install the Debian packages a command of this checkout needs (idempotent). Needs root for
# apt-get; without root it only checks, and names what is missing and the one command that
# installs it.
#
#   scripts/setup-system.sh [all]   what the test tiers need (make system, make test):
#     ansible-test sanity (shell scripts): the shell script linter package
#     git                  test repositories served by the olah Hub mirror (the LFS files are
#                          written without git-lfs: tests/lib/olah_mirror.py)
#     systemd-container, debootstrap, openssh-client   the fleet of nspawn hosts
#     docker-registry      the real OCI registry the Ollama test double pulls from (tests/lib/ollama_env.py)
#     prometheus           promtool: checks the metrics, alert rules and dashboard queries (tests/integration/test_metrics.py)
#     prometheus-node-exporter  served on a fleet host with the textfile metrics (tests/fleet/test_observability.py)
#     chromium             renders the HTML fleet report headless (tests/integration/test_report_html.py)
#     logrotate            rotates a runtime's log file (tests/integration/test_runtime_logs.py)
#   scripts/setup-system.sh demo    what make demo needs, checked by what it runs (so a Python or a
#                          git that is not from a Debian package counts too):
#     git                  the olah mirror's repositories (olah reads them through GitPython)
#     pythonX.Y-venv       the venv and ensurepip modules of $VENOM_PYTHON (default python3.11)
set -euo pipefail
profile=${1:-all}
# Installed for their tools only: their daemons must not run on the test machine.
DAEMONS=(prometheus.service prometheus-node-exporter.service)
missing=()
case "$profile" in
  all)
    PACKAGES=(shellcheck git systemd-container debootstrap openssh-client rsync curl docker-registry
              prometheus prometheus-node-exporter chromium logrotate)
    for p in "${PACKAGES[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ;;
  demo)
    py=${VENOM_PYTHON:-python3.11}
    command -v git >/dev/null 2>&1 || missing+=(git)
    if ! command -v "$py" >/dev/null 2>&1; then
      missing+=("$py" "$py-venv")
    elif ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      missing+=("$py-venv")
    fi
    ;;
  *) echo "usage: scripts/setup-system.sh [all|demo]" >&2; exit 2 ;;
esac
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system.sh: missing Debian packages ($profile): ${missing[*]}" >&2
  echo "setup-system.sh: install them with: sudo apt-get install -y ${missing[*]}" >&2
  [ "$(id -u)" -eq 0 ] || echo "setup-system.sh: (or run the command as root: it installs them itself)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ -d /run/systemd/system ]; then
  systemctl disable --now "${DAEMONS[@]}" >/dev/null 2>&1 || true
fi
echo "setup-system.sh: installed ${missing[*]}" >&2
