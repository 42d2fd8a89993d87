#!/usr/bin/env bash
# Install the Debian packages the test tiers need (idempotent). Needs root for apt-get; without
# root it only checks and names what is missing.
#   ansible-test sanity (shell scripts): the shell script linter package
#   git, git-lfs         test repositories served by the olah Hub mirror
#   systemd-container, debootstrap, openssh-client   the fleet of nspawn hosts
#   docker-registry      the real OCI registry the Ollama test double pulls from (tests/lib/ollama_env.py)
#   prometheus           promtool: checks the metrics, alert rules and dashboard queries (tests/integration/test_metrics.py)
#   prometheus-node-exporter  served on a fleet host with the textfile metrics (tests/fleet/test_observability.py)
#   chromium             renders the HTML fleet report headless (tests/integration/test_report_html.py)
#   logrotate            rotates a runtime's log file (tests/integration/test_runtime_logs.py)
set -euo pipefail
PACKAGES=(shellcheck git git-lfs systemd-container debootstrap openssh-client rsync curl docker-registry
          prometheus prometheus-node-exporter chromium logrotate)
# Installed for their tools only: their daemons must not run on the test machine.
DAEMONS=(prometheus.service prometheus-node-exporter.service)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system.sh: missing Debian packages: ${missing[*]}" >&2
  echo "setup-system.sh: run 'sudo apt-get install -y ${missing[*]}' (or run the tests as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ -d /run/systemd/system ]; then
  systemctl disable --now "${DAEMONS[@]}" >/dev/null 2>&1 || true
fi
echo "setup-system.sh: installed ${missing[*]}"
