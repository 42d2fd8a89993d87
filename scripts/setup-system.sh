#!/usr/bin/env bash
# Install the Debian packages the test tiers need (idempotent). Needs root for apt-get; without
# root it only checks and names what is missing.
#   ansible-test sanity (shell scripts): the shell script linter package
#   git, git-lfs         test repositories served by the olah Hub mirror
#   systemd-container, debootstrap, openssh-client   the fleet of nspawn hosts
set -euo pipefail
PACKAGES=(shellcheck git git-lfs systemd-container debootstrap openssh-client rsync curl)
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
echo "setup-system.sh: installed ${missing[*]}"
