# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""validate_certs and ca_path: the option plumbing from the modules to every HTTP client, the
certificate errors and the warnings (models/tls.py). Against real HTTPS servers with a private CA:
tests/integration/test_tls_private_ca.py."""
from __future__ import annotations

import ssl
import types

import certifi
import pytest
import requests
import urllib3

from ansible_collections.venom.models.plugins.module_utils.errors import ProviderError, ValidationError
from ansible_collections.venom.models.plugins.module_utils.models import huggingface as hf
from ansible_collections.venom.models.plugins.module_utils.models import ollama
from ansible_collections.venom.models.plugins.module_utils.models import tls as tls_module
from ansible_collections.venom.models.plugins.module_utils.models.available import available
from ansible_collections.venom.models.plugins.module_utils.models.providers import ModelRequest
from ansible_collections.venom.models.plugins.module_utils.models.tls import Tls, certificate_cause
from ansible_collections.venom.models.plugins.module_utils.module_support import common_argument_spec, lookup_query
from ansible_collections.venom.models.plugins.module_utils.store.paths import StatePaths

BUNDLE = certifi.where()  # a real PEM bundle on every host that has requests
VERIFY_FAILED = ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
                 "certificate (_ssl.c:1006)")


def _cert_exc() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, VERIFY_FAILED)
    exc.verify_message = "unable to get local issuer certificate"
    return exc


def test_every_module_accepts_the_options_with_safe_defaults():
    spec = common_argument_spec()
    assert spec["validate_certs"] == {"type": "bool", "default": True}
    assert spec["ca_path"] == {"type": "path"}
    assert "validate_certs" in ModelRequest.__dataclass_fields__ and ModelRequest("x").validate_certs is True


def test_the_verify_settings_of_each_client():
    assert Tls().requests_verify() is True and Tls().default
    assert Tls(ca_path=BUNDLE).requests_verify() == BUNDLE and not Tls(ca_path=BUNDLE).default
    assert Tls(False).requests_verify() is False
    assert Tls(False).ssl_context().verify_mode == ssl.CERT_NONE and not Tls(False).ssl_context().check_hostname
    ctx = Tls(ca_path=BUNDLE).ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname and ctx.cert_store_stats()["x509_ca"] > 10


def test_a_missing_or_broken_ca_path_is_refused_before_any_request_with_the_fix(tmp_path):
    missing = Tls(ca_path=str(tmp_path / "nope.pem"))  # a task that asks no remote does not read it
    with pytest.raises(ValidationError) as err:
        missing.requests_verify()
    assert "does not exist" in err.value.msg and "ansible.builtin.copy" in err.value.fix
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    for use in (Tls.ssl_context, Tls.requests_verify, hf.configure_hub_tls):
        with pytest.raises(ValidationError) as err:
            use(Tls(ca_path=str(bad)))
        assert "not a readable PEM CA bundle" in err.value.msg and "BEGIN CERTIFICATE" in err.value.fix
    with pytest.raises(ValidationError):
        Tls(validate_certs="no")
    assert Tls(False, ca_path=str(tmp_path / "nope.pem")).requests_verify() is False  # not read when not validating
    provider = ollama.OllamaProvider(ModelRequest("m", provider="ollama", ca_path=str(bad)), StatePaths(str(tmp_path)))
    with pytest.raises(ValidationError):
        provider.client.tags()


def test_warnings_name_each_https_remote_asked_without_validation_once():
    tls = Tls(False)
    for url in ("https://hub.internal:8443/api/models/x", "https://hub.internal:8443/y", "http://plain:80/z",
                "https://registry.internal/v2/"):
        tls.contacting(url)
    warned = tls.warnings()
    assert len(warned) == 2 and "https://hub.internal:8443 was not checked" in warned[0]
    assert "https://registry.internal" in warned[1] and all("Set ca_path" in w for w in warned)
    checked = Tls(ca_path=BUNDLE)
    checked.contacting("https://hub.internal:8443/")
    assert checked.warnings() == []


def test_a_certificate_failure_is_found_however_deep_it_is_wrapped():
    direct = _cert_exc()
    assert certificate_cause(direct) == "unable to get local issuer certificate"
    try:  # httpx/requests wrap the ssl error in their own errors, with the text of the cause
        try:
            raise direct
        except ssl.SSLError as inner:
            raise requests.exceptions.SSLError(requests.packages.urllib3.exceptions.MaxRetryError(
                None, "https://x/", reason=inner)) from inner
    except requests.RequestException as exc:
        assert certificate_cause(exc) == "unable to get local issuer certificate"
    assert certificate_cause(ConnectionError(VERIFY_FAILED)) == "unable to get local issuer certificate"
    assert certificate_cause(ConnectionError("Connection refused")) is None
    assert certificate_cause(None) is None


def test_the_certificate_error_names_the_problem_and_the_fix():
    err = Tls().certificate_error(_cert_exc(), "https://hub.internal", "Resolving org/m@main")
    assert isinstance(err, ProviderError)
    assert err.msg.startswith("Resolving org/m@main: the TLS certificate of https://hub.internal could not be verified")
    assert "default trust store" in err.msg and "unable to get local issuer certificate" in err.msg
    assert "Set ca_path to your CA bundle" in err.fix and "validate_certs: false" in err.fix
    with_bundle = Tls(ca_path=BUNDLE).certificate_error(_cert_exc(), "https://hub.internal", "x")
    assert BUNDLE in with_bundle.msg and f"Check that ca_path ({BUNDLE})" in with_bundle.fix
    assert Tls().certificate_error(TimeoutError("slow"), "https://hub.internal", "x") is None


def test_the_hf_provider_translates_a_certificate_failure(tmp_path):
    provider = hf.HuggingFaceProvider(ModelRequest("org/m", endpoint="https://hub.internal"), StatePaths(str(tmp_path)))
    err = provider._translate(ConnectionError(VERIFY_FAILED), "main", "Resolving org/m@main")
    assert "could not be verified" in err.msg and "ca_path" in err.fix


def test_the_hub_client_is_built_with_the_settings(monkeypatch):
    hf.load_hub()
    from huggingface_hub.utils import _http as hub_http
    made, factories = [], []
    monkeypatch.setattr(hub_http, "set_client_factory", factories.append)
    name = "httpx2" if hasattr(hub_http, "httpx2") else "httpx"
    real = getattr(hub_http, name)
    fake = types.SimpleNamespace(Client=lambda **kw: made.append(kw) or kw, Timeout=real.Timeout)
    monkeypatch.setattr(hub_http, name, fake)
    monkeypatch.setattr(hf, "_HUB_TLS", None)
    tls = Tls(ca_path=BUNDLE)
    api = hf.hub_api("https://hub.internal", None, tls)
    assert api.endpoint == "https://hub.internal" and len(factories) == 1
    factories[0]()
    assert made[0]["verify"] is tls.ssl_context() and made[0]["follow_redirects"] is True
    timeout = made[0]["timeout"]  # (connect, read): huggingface_hub's own client waits forever
    assert (timeout.connect, timeout.read) == (hf.HUB_CONNECT_TIMEOUT, hf.HUB_READ_TIMEOUT) == (10.0, 60.0)
    hf.configure_hub_tls(Tls(ca_path=BUNDLE))  # the same settings: the shared client is kept
    assert len(factories) == 1
    hf.configure_hub_tls(Tls())  # back to the defaults: the default trust store, the same timeouts
    assert len(factories) == 2 and hf._HUB_TLS == (True, None)
    factories[-1]()
    assert "verify" not in made[-1] and made[-1]["timeout"].connect == hf.HUB_CONNECT_TIMEOUT


def test_the_ollama_server_and_registry_requests_carry_verify(monkeypatch, tmp_path):
    calls = []

    def fake(method, url, **kw):
        calls.append((method, url, kw.get("verify")))
        raise requests.exceptions.SSLError(VERIFY_FAILED)

    monkeypatch.setattr(requests, "get", lambda url, **kw: fake("GET", url, **kw))
    monkeypatch.setattr(requests.Session, "request", lambda self, method, url, **kw: fake(method, url, **kw))
    request = ModelRequest("m:latest", provider="ollama", endpoint="https://ollama.internal:11434",
                           registry="https://reg.internal", validate_certs=False)
    provider = ollama.OllamaProvider(request, StatePaths(str(tmp_path)))
    with pytest.raises(ProviderError) as err:
        provider.client.tags()
    assert "The Ollama server at https://ollama.internal:11434: the TLS certificate" in err.value.msg
    with pytest.raises(ProviderError) as err:
        ollama.registry_manifest("m:latest", "https://reg.internal", tls=provider.tls)
    assert "registry manifest of" in err.value.msg and "could not be verified" in err.value.msg
    assert [c[2] for c in calls] == [False, False]
    assert len(provider.tls.warnings()) == 2  # the server and the registry

    tls = Tls(ca_path=BUNDLE)
    with pytest.raises(ProviderError):
        ollama.OllamaClient("https://ollama.internal:11434", tls=tls).version()
    assert calls[-1][2] == BUNDLE


def test_the_lookups_pass_the_settings_on(monkeypatch, tmp_path):
    module = types.SimpleNamespace(params={"provider": "ollama", "endpoint": "https://o:1", "search": None,
                                           "names": [], "revision": None, "limit": 5, "token": None,
                                           "validate_certs": False, "ca_path": None}, no_log_values=set())
    query = lookup_query(module)
    assert isinstance(query["tls"], Tls) and query["tls"].requests_verify() is False
    seen = []
    monkeypatch.setattr(ollama.OllamaClient, "tags", lambda self: seen.append(self.tls) or [])
    result = available(models_dir=str(tmp_path), models=[], **query)
    assert result["count"] == 0 and seen == [query["tls"]] and len(query["tls"].warnings()) == 1


def test_the_hub_client_keeps_huggingface_hub_s_request_hook_on_either_httpx():
    made = []

    def fake_httpx():
        return types.SimpleNamespace(Client=lambda **kw: made.append(kw) or kw,
                                     Timeout=lambda read, connect: (connect, read))

    def hook(request):
        return request
    old = types.SimpleNamespace(httpx=fake_httpx(), hf_request_event_hook=hook)   # huggingface_hub 1.x
    hf._hub_client(old)
    assert made[-1]["event_hooks"] == {"request": [hook]} and made[-1]["timeout"] == (10.0, 60.0)
    assert "verify" not in made[-1]
    new = types.SimpleNamespace(httpx2=fake_httpx(), httpx=None)   # 2.x, without a hook
    context = object()
    hf._hub_client(new, context)
    assert made[-1]["event_hooks"] is None and made[-1]["verify"] is context and made[-1]["follow_redirects"] is True


def test_the_settings_of_a_request_like_object_default_to_validation():
    assert (Tls.of(types.SimpleNamespace()).validate_certs, Tls.of(types.SimpleNamespace()).ca_path) == (True, None)
    tls = Tls.of(types.SimpleNamespace(validate_certs=False, ca_path="/etc/ca.pem"))
    assert (tls.validate_certs, tls.ca_path) == (False, "/etc/ca.pem")
    shared = Tls(False)
    assert Tls.of(types.SimpleNamespace(tls=shared, validate_certs=True)) is shared, "one Tls collects the warnings"
    assert Tls.of(types.SimpleNamespace(tls="not a Tls")).validate_certs is True


def test_only_validation_against_the_host_trust_store_is_the_default():
    assert Tls().default and Tls(ca_path="").default and Tls(ca_path="").ca_path is None
    assert not Tls(False).default and not Tls(False, ca_path=BUNDLE).default
    assert Tls(ca_path="").requests_verify() is True


def test_without_validation_urllib3_s_warning_per_request_is_silenced(monkeypatch):
    silenced = []
    monkeypatch.setattr(urllib3, "disable_warnings", silenced.append)
    Tls().quiet_requests()
    Tls(ca_path=BUNDLE).quiet_requests()
    assert silenced == []
    Tls(False).quiet_requests()
    assert silenced == [urllib3.exceptions.InsecureRequestWarning]


def test_a_remote_without_a_url_is_not_warned_about():
    tls = Tls(False)
    tls.contacting(None)
    tls.contacting("")
    tls.contacting("ftp://files.internal/x")
    assert tls.warnings() == []


def test_a_checked_ca_path_is_not_read_again(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(open(BUNDLE, "rb").read())   # pylint: disable=consider-using-with
    tls = Tls(ca_path=str(bundle))
    assert tls.requests_verify() == str(bundle)
    bundle.write_text("not a certificate any more\n")
    tls_module._context.cache_clear()
    assert tls.requests_verify() == str(bundle), "checked once, before the first request"
    with pytest.raises(ValidationError):
        Tls(ca_path=str(bundle)).requests_verify()


def test_the_reason_of_a_certificate_error_without_a_verify_message():
    exc = ssl.SSLCertVerificationError(1, "x")
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    assert certificate_cause(exc) == "CERTIFICATE_VERIFY_FAILED"
    bare = ssl.SSLCertVerificationError(1, "bad certificate")
    bare.reason = bare.verify_message = None   # as the ssl module leaves them when it knows no reason
    assert certificate_cause(bare) == str(bare)
    assert certificate_cause(RuntimeError("[SSL: CERTIFICATE_VERIFY_FAILED] handshake")) == "certificate verify failed"


def test_a_wrapped_text_that_repeats_the_reason_gives_it_once():
    text = ("Max retries exceeded (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
            "certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1006)'))); again: "
            "certificate verify failed: self-signed certificate")
    assert certificate_cause(ConnectionError(text)) == "self-signed certificate in certificate chain"


def _quiet_cert_exc() -> ssl.SSLCertVerificationError:
    """A certificate failure whose text does not say so: only its type does."""
    exc = ssl.SSLCertVerificationError(1, "handshake")
    exc.verify_message = "certificate has expired"
    return exc


def test_a_certificate_failure_is_found_in_the_cause_the_context_the_arguments_or_the_reason():
    try:
        raise RuntimeError("while connecting") from _quiet_cert_exc()
    except RuntimeError as exc:
        assert certificate_cause(exc) == "certificate has expired"
    try:
        try:
            raise _quiet_cert_exc()
        except ssl.SSLError:
            raise RuntimeError("while connecting")   # pylint: disable=raise-missing-from
    except RuntimeError as exc:
        assert certificate_cause(exc) == "certificate has expired"
    assert certificate_cause(RuntimeError("wrapped", _quiet_cert_exc())) == "certificate has expired"
    holder = RuntimeError("urlopen error")
    holder.reason = _quiet_cert_exc()
    assert certificate_cause(holder) == "certificate has expired"
    holder.reason = "a text, not an error"
    assert certificate_cause(holder) is None


def test_errors_that_cause_each_other_are_searched_once():
    first, second = RuntimeError("first"), RuntimeError("second")
    first.__context__, second.__context__ = second, first
    assert certificate_cause(first) is None
    first.__cause__ = _quiet_cert_exc()
    assert certificate_cause(first) == "certificate has expired"


def test_the_context_of_a_ca_path_trusts_that_bundle_only(tmp_path):
    with open(BUNDLE, encoding="ascii") as fh:
        first = fh.read().split("-----END CERTIFICATE-----")[0]
    one = tmp_path / "one-ca.pem"
    one.write_text(first[first.index("-----BEGIN CERTIFICATE-----"):] + "-----END CERTIFICATE-----\n")
    ctx = Tls(ca_path=str(one)).ssl_context()
    assert ctx.cert_store_stats()["x509_ca"] == 1 and ctx.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("value", ["no", 0, None, "false"])
def test_a_validate_certs_that_is_not_a_boolean_is_refused_naming_the_value_and_the_fix(value):
    with pytest.raises(ValidationError) as err:
        Tls(validate_certs=value)
    assert err.value.msg == f"validate_certs must be true or false, not {value!r}."
    assert err.value.fix == "Set validate_certs: true (the default) or false."
