#!/usr/bin/env bash
# Print the cache directory for slow-to-build things (the olah and vLLM venvs, the fleet base):
# $VENOM_CACHE_DIR when set; else /var/cache/venom-models when this user can write there (root, or
# a machine where it was made group-writable); else a per-user cache,
# ${XDG_CACHE_HOME:-~/.cache}/venom-models, so that nothing needs root (make demo as a plain user).
set -euo pipefail
system=/var/cache/venom-models
if [ -n "${VENOM_CACHE_DIR:-}" ]; then
  echo "$VENOM_CACHE_DIR"
elif { [ -d "$system" ] && [ -w "$system" ]; } || { [ ! -e "$system" ] && [ -w "$(dirname "$system")" ]; }; then
  echo "$system"
else
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/venom-models"
fi
