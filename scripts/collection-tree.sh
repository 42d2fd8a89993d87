#!/usr/bin/env bash
# Build an ansible_collections/venom/models tree from the files of this checkout (tracked, and
# untracked but not ignored) and print the directory that holds ansible_collections: use it as
# ANSIBLE_COLLECTIONS_PATH. ansible-test and ansible-playbook need the collection at such a path;
# the checkout itself may live anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${VENOM_COLLECTION_ROOT:-${TMPDIR:-/tmp}/venom-collection-$(id -u)}
dest="$root/ansible_collections/venom/models"
rm -rf "$dest"
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$dest"
echo "$root"
