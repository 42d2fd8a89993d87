# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""venom.models.site after venom_model_facts in the same run: the facts' ansible_facts.venom_models
(the installed models) is injected as the variable venom_models and outranks the inventory's list
of models to have. site.yml must refuse it, naming the clash and the fixes, instead of trying to
"install" the facts' entries; extra vars (which outrank facts) still work."""
from __future__ import annotations

import json
import os

from tests.lib.ansible_run import run_playbook


def _setup(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "config.json").write_text('{"model_type": "bert"}')
    (source / "weights.bin").write_bytes(b"venom" * 100)
    models_dir = str(tmp_path / "models")
    wanted = [{"name": "clash-model", "provider": "local", "source": str(source)}]
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"node": {
        "ansible_connection": "local", "venom_become": False, "venom_host_bootstrap": False,
        "venom_models_dir": models_dir, "venom_models": wanted}}}}))
    facts_play = {"name": "facts first", "hosts": "node", "gather_facts": False, "tasks": [
        {"name": "Install the model", "venom.models.venom_model": {
            "name": "clash-model", "provider": "local", "source": str(source), "models_dir": models_dir}},
        {"name": "Gather the models", "venom.models.venom_model_facts": {
            "models_dir": models_dir, "gather_subset": ["models"]}}]}
    return str(inventory), facts_play, wanted, models_dir


def test_site_refuses_the_facts_list_hiding_the_inventory_models(tmp_path):
    inventory, facts_play = _setup(tmp_path)[:2]
    res = run_playbook([facts_play, {"import_playbook": "venom.models.site"}], inventory=inventory)
    assert res.rc != 0, res.stdout[-4000:]
    failed = res.task("Check that venom_models is not the facts' list of installed models", host="node")
    assert failed["failed"] is True
    for words in ("venom_model_facts", "inject_facts_as_vars", "outrank inventory variables", "extra vars"):
        assert words in failed["msg"], failed["msg"]
    assert not [r for r in res.results if r["task"] == "Install, verify or update the other models"
                and r["status"] != "skipped"], "nothing was installed from the facts' entries"


def test_site_with_venom_models_as_extra_vars_after_the_facts(tmp_path):
    inventory, facts_play, wanted, models_dir = _setup(tmp_path)
    res = run_playbook([facts_play, {"import_playbook": "venom.models.site"}], inventory=inventory,
                       extra_args=["-e", json.dumps({"venom_models": wanted})])
    assert res.rc == 0, res.stdout[-6000:] + res.stderr[-3000:]
    installed = res.task("Install, verify or update the other models", host="node")["results"]
    assert [(r["item"]["name"], r["changed"]) for r in installed] == [("clash-model", False)]
    assert os.path.isdir(os.path.join(models_dir, "local", "clash-model"))
