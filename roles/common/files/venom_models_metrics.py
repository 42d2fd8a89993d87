# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Refresh the venom.models Prometheus textfile (run by venom-models-metrics.service).

The same code as venom.models.venom_model_facts' metrics_file option: the collection's
module_utils, which the roles copy to the library directory given with --library. The vLLM
API key for the health check comes from the environment (the unit's EnvironmentFile=).
"""
import argparse
import os
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", required=True, help="directory holding ansible_collections/venom/models")
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--quota-gb", type=float, required=True)
    parser.add_argument("--output", required=True, help="the .prom file in node_exporter's textfile directory")
    args = parser.parse_args()
    sys.path.insert(0, args.library)
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.venom.models.plugins.module_utils.host.metrics import collect

    def runner(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    out = collect(args.models_dir, args.output, quota_gb=args.quota_gb, runner=runner,
                  api_key=os.environ.get("VLLM_API_KEY") or None)
    print(f"{out['path']}: {out['series']} series, {'rewritten' if out['changed'] else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
