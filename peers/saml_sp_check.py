#!/usr/bin/env python3
"""Self-check for peers/saml_sp.py, without Latch.

    peers/.venv/bin/python peers/saml_sp_check.py      (or: peers/.venv/bin/pytest peers/saml_sp_check.py)

A. SSO end to end against peers/saml_idp.py: the SP's signed HTTP-Redirect AuthnRequest goes to
   saml_idp.py's /sso, the Response it produces is POSTed to the SP's /acs.
B. Against an in-process pysaml2 IdP (its metadata has SingleLogoutService in both bindings):
   SSO (the IdP verifies the AuthnRequest's query signature), the SP-initiated LogoutRequest
   (HTTP-Redirect carries SigAlg + Signature and verifies; HTTP-POST is XML-signed), the IdP's
   LogoutResponses, IdP-initiated LogoutRequests in both bindings, and refusals (replayed,
   unsolicited and tampered Responses; unsigned and tampered LogoutRequests).
"""

import base64
import html
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from saml_sp import make_key_and_cert  # also silences pysaml2's deprecation warnings
from saml2 import BINDING_HTTP_POST as POST, BINDING_HTTP_REDIRECT as REDIRECT, saml
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.s_utils import deflate_and_base64_encode
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

HERE = os.path.dirname(os.path.abspath(__file__))
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(script, env):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, script)], env={**os.environ, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    assert line.startswith("ready http://127.0.0.1:"), (script, line)
    return p, line.split()[1]


def form(page):
    action = html.unescape(re.search(r'action="([^"]+)"', page).group(1))
    return action, {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page)}


def b64(xml):
    return base64.b64encode(str(xml).encode()).decode()


def query(url):
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}


def state(sp):
    return requests.get(f"{sp}/test/state").json()


def check_sso_with_saml_idp():
    sp_port, idp_port = free_port(), free_port()
    sp_proc, sp = spawn("saml_sp.py", {"SAML_SP_PORT": str(sp_port),
                                       "SAML_IDP_METADATA_URL": f"http://127.0.0.1:{idp_port}/metadata"})
    idp_proc, idp = spawn("saml_idp.py", {"SAML_IDP_PORT": str(idp_port), "SAML_SP_METADATA_URL": f"{sp}/metadata"})
    try:
        r = requests.get(f"{sp}/login?relay_state=there", allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith(f"{idp}/sso?"), r.text
        q = query(r.headers["Location"])
        assert q["SigAlg"] == SIG_RSA_SHA256 and q["Signature"] and q["RelayState"] == "there", q
        action, fields = form(requests.get(r.headers["Location"]).text)
        assert action == f"{sp}/acs"
        r = requests.post(action, data=fields)
        assert r.status_code == 200 and "Signed in as alice@example.com" in r.text, r.text
        s = state(sp)["signed_in"][-1]
        assert s["name_id_format"] == EMAIL and s["attributes"]["givenName"] == ["Alice"] and s["relay_state"] == "there"
        assert s["session_index"] and s["in_response_to"] and "Assertion" in s["assertion_xml"], s
        r = requests.post(action, data=fields)  # the same Response again
        assert r.status_code == 400 and state(sp)["errors"], r.text
        # saml_idp.py has a SingleLogoutService (its Single Logout: saml_idp_slo_check.py).
        assert requests.get(f"{sp}/logout", allow_redirects=False).status_code == 302
    finally:
        for p in (sp_proc, idp_proc):
            p.terminate()
            assert p.wait(10) == 0
    print("A. SSO with saml_idp.py: ok")


class LocalIdp:
    """A pysaml2 IdP whose only HTTP endpoint is /metadata; this script plays its browser and its SSO/SLO."""

    def __init__(self, workdir):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), None)
        base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.sso, self.slo, self.entity_id = f"{base}/sso", f"{base}/slo", f"{base}/metadata"
        self.key_file, cert_file = make_key_and_cert(workdir)
        self.server = Server(config=IdPConfig().load({
            "entityid": self.entity_id, "xmlsec_binary": "/usr/bin/xmlsec1", "key_file": self.key_file,
            "cert_file": cert_file, "metadata": {}, "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
            "service": {"idp": {"endpoints": {
                "single_sign_on_service": [(self.sso, REDIRECT), (self.sso, POST)],
                "single_logout_service": [(self.slo, REDIRECT), (self.slo, POST)]},
                "want_authn_requests_signed": True,  # makes pysaml2 verify HTTP-Redirect query signatures
                "policy": {"default": {"lifetime": {"minutes": 5}}}}},
        }))
        xml = create_metadata_string(None, config=self.server.config)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)

            def log_message(self, *args):
                pass

        self.httpd.RequestHandlerClass = Handler
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def load_sp(self, sp):
        self.server.metadata.metadata.clear()
        self.server.metadata.load("inline", requests.get(f"{sp}/metadata").text)

    def response(self, authn_request_id, sp, name_id="bob@example.com", sign_assertion=True, sign_response=False):
        return self.server.create_authn_response(
            {"mail": ["bob@example.com"]}, in_response_to=authn_request_id, destination=f"{sp}/acs",
            sp_entity_id=f"{sp}/metadata", name_id=saml.NameID(format=EMAIL, text=name_id),
            authn={"class_ref": saml.AUTHN_PASSWORD_PROTECTED, "authn_auth": self.entity_id},
            sign_assertion=sign_assertion, sign_response=sign_response, sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256)

    def authn_request_id(self, sp):
        q = query(requests.get(f"{sp}/login", allow_redirects=False).headers["Location"])
        req = self.server.parse_authn_request(q["SAMLRequest"], REDIRECT, None, q["SigAlg"], q["Signature"])
        return req.message.id


def sign_in(idp, sp, relay_state="r"):
    r = requests.get(f"{sp}/login?relay_state={relay_state}", allow_redirects=False)
    q = query(r.headers["Location"])
    req = idp.server.parse_authn_request(q["SAMLRequest"], REDIRECT, q.get("RelayState"), q["SigAlg"], q["Signature"])
    fields = {"SAMLResponse": b64(idp.response(req.message.id, sp))}
    r = requests.post(f"{sp}/acs", data=fields)
    assert r.status_code == 200 and "Signed in as bob@example.com" in r.text, r.text
    return fields, state(sp)["signed_in"][-1]


def query_signature_ok(location, field, cert_pem):
    raw = dict(part.split("=", 1) for part in urllib.parse.urlsplit(location).query.split("&"))
    signed = "&".join(f"{k}={raw[k]}" for k in (field, "RelayState", "SigAlg") if k in raw).encode()
    key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    key.verify(base64.b64decode(urllib.parse.unquote(raw["Signature"])), signed, padding.PKCS1v15(), hashes.SHA256())
    return True


def check_slo_with_local_idp():
    with tempfile.TemporaryDirectory() as workdir:
        idp = LocalIdp(workdir)
        sp2_proc = None
        sp_proc, sp = spawn("saml_sp.py", {"SAML_SP_PORT": "0", "SAML_IDP_METADATA_URL": idp.entity_id})
        try:
            idp.load_sp(sp)
            cert = requests.get(f"{sp}/cert").text
            fields, session = sign_in(idp, sp)
            assert requests.post(f"{sp}/acs", data=fields).status_code == 400  # replay
            unsolicited = b64(idp.response(None, sp))
            assert requests.post(f"{sp}/acs", data={"SAMLResponse": unsolicited}).status_code == 400
            acs = lambda resp: requests.post(f"{sp}/acs", data={"SAMLResponse": b64(resp)})  # noqa: E731
            tampered = str(idp.response(idp.authn_request_id(sp), sp, name_id="eve@example.com"))
            tampered = tampered.replace("eve@", "bob@")
            assert acs(tampered).status_code == 400 and "Signature" in state(sp)["errors"][-1]["error"]
            unsigned = idp.response(idp.authn_request_id(sp), sp, sign_assertion=False)
            assert acs(unsigned).status_code == 400 and "signed" in state(sp)["errors"][-1]["error"]
            assert acs(idp.response(idp.authn_request_id(sp), sp, sign_assertion=False, sign_response=True)).ok
            session = state(sp)["signed_in"][-1]  # /logout ends the most recent active session

            # SP-initiated, HTTP-Redirect: the LogoutRequest carries SigAlg and Signature, and they verify.
            r = requests.get(f"{sp}/logout?binding=redirect&relay_state=bye", allow_redirects=False)
            assert r.status_code == 302 and r.headers["Location"].startswith(f"{idp.slo}?"), r.text
            q = query(r.headers["Location"])
            assert q["SigAlg"] == SIG_RSA_SHA256 and q["Signature"] and q["RelayState"] == "bye", q
            assert query_signature_ok(r.headers["Location"], "SAMLRequest", cert)
            req = idp.server.parse_logout_request(q["SAMLRequest"], REDIRECT, "bye", q["SigAlg"], q["Signature"])
            assert req.message.name_id.text == "bob@example.com" and req.message.name_id.format == EMAIL
            assert [s.text for s in req.message.session_index] == [session["session_index"]]
            resp = idp.server.create_logout_response(req.message, [REDIRECT], sign=False)
            info = idp.server.apply_binding(REDIRECT, str(resp), f"{sp}/slo", "bye", response=True, sign=True,
                                            sigalg=SIG_RSA_SHA256)
            r = requests.get(dict(info["headers"])["Location"])
            assert r.status_code == 200 and "Signed out" in r.text, r.text
            lr = state(sp)["logout_responses"][-1]
            assert lr["verified"] and lr["pysaml2_verified"] and lr["relay_state"] == "bye", lr
            assert lr["status"].endswith(":Success") and lr["in_response_to"] == req.message.id, lr
            assert not state(sp)["signed_in"][-1]["active"]
            r = requests.get(dict(info["headers"])["Location"])  # answers nothing outstanding any more
            assert r.status_code == 400

            # SP-initiated, HTTP-POST: an XML-signed LogoutRequest; the IdP answers with an XML-signed response.
            sign_in(idp, sp)
            action, f = form(requests.get(f"{sp}/logout?binding=post").text)
            assert action == idp.slo and "RelayState" not in f
            xml = base64.b64decode(f["SAMLRequest"]).decode()
            assert "SignatureValue" in xml and idp.server.sec.correctly_signed_logout_request(xml, must=True)
            req = idp.server.parse_logout_request(f["SAMLRequest"], POST)
            resp = idp.server.create_logout_response(req.message, [POST], sign=True)
            r = requests.post(f"{sp}/slo", data={"SAMLResponse": b64(resp), "RelayState": "p"})
            assert r.status_code == 200 and state(sp)["logout_responses"][-1]["verified"], r.text

            # IdP-initiated, HTTP-Redirect: verified, session forgotten, a signed 302 LogoutResponse,
            # RelayState echoed.
            _, session = sign_in(idp, sp)
            name_id = saml.NameID(format=EMAIL, text="bob@example.com")
            rid, lreq = idp.server.create_logout_request(f"{sp}/slo", f"{sp}/metadata", name_id=name_id,
                                                         session_indexes=[session["session_index"]], sign=False)
            info = idp.server.apply_binding(REDIRECT, str(lreq), f"{sp}/slo", "fan out", sign=True,
                                            sigalg=SIG_RSA_SHA256)
            r = requests.get(dict(info["headers"])["Location"], allow_redirects=False)
            assert r.status_code == 302 and r.headers["Location"].startswith(f"{idp.slo}?"), r.text
            q = query(r.headers["Location"])
            assert q["RelayState"] == "fan out" and query_signature_ok(r.headers["Location"], "SAMLResponse", cert)
            resp = idp.server.parse_logout_request_response(q["SAMLResponse"], REDIRECT)
            assert resp.response.in_response_to == rid and resp.status_ok()
            s = state(sp)
            assert s["logout_requests"][-1]["verified"] and s["logout_requests"][-1]["matched"], s
            assert s["logout_requests"][-1]["session_index"] == session["session_index"]
            assert not s["signed_in"][-1]["active"]

            # IdP-initiated, HTTP-POST: XML-signed request; the answer is an auto-posted, XML-signed response.
            _, session = sign_in(idp, sp)
            rid, lreq = idp.server.create_logout_request(f"{sp}/slo", f"{sp}/metadata", name_id=name_id,
                                                         session_indexes=[session["session_index"]], sign=True)
            r = requests.post(f"{sp}/slo", data={"SAMLRequest": b64(lreq), "RelayState": "x"})
            action, f = form(r.text)
            assert r.status_code == 200 and action == idp.slo and f["RelayState"] == "x", r.text
            xml = base64.b64decode(f["SAMLResponse"]).decode()
            assert idp.server.sec.correctly_signed_logout_response(xml, must=True).in_response_to == rid

            # The query signature covers the parameters as sent: RelayState "a b" encoded as a%20b (not a+b, as
            # Python's urlencode, and so pysaml2's verify_redirect_signature, would have it).
            _, session = sign_in(idp, sp)
            _, lreq = idp.server.create_logout_request(f"{sp}/slo", f"{sp}/metadata", name_id=name_id,
                                                       session_indexes=[session["session_index"]], sign=False)
            signed = (f"SAMLRequest={urllib.parse.quote(deflate_and_base64_encode(str(lreq)), safe='')}"
                      f"&RelayState=a%20b&SigAlg={urllib.parse.quote(SIG_RSA_SHA256, safe='')}")
            with open(idp.key_file, "rb") as fh:
                key = serialization.load_pem_private_key(fh.read(), None)
            sig = base64.b64encode(key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
            r = requests.get(f"{sp}/slo?{signed}&Signature={urllib.parse.quote(sig, safe='')}", allow_redirects=False)
            assert r.status_code == 302 and query(r.headers["Location"])["RelayState"] == "a b", r.text
            lr = state(sp)["logout_requests"][-1]
            assert lr["verified"] and lr["pysaml2_verified"] is False and lr["relay_state"] == "a b", lr

            # Refused: unsigned and tampered LogoutRequests; the session stays.
            _, session = sign_in(idp, sp)
            _, lreq = idp.server.create_logout_request(f"{sp}/slo", f"{sp}/metadata", name_id=name_id, sign=False)
            enc = urllib.parse.quote_plus(deflate_and_base64_encode(str(lreq)))
            assert requests.get(f"{sp}/slo?SAMLRequest={enc}").status_code == 400
            info = idp.server.apply_binding(REDIRECT, str(lreq), f"{sp}/slo", "a", sign=True, sigalg=SIG_RSA_SHA256)
            bad = dict(info["headers"])["Location"].replace("RelayState=a", "RelayState=b")
            assert requests.get(bad, allow_redirects=False).status_code == 400
            assert requests.post(f"{sp}/slo", data={"SAMLRequest": b64(lreq)}).status_code == 400
            s = state(sp)
            assert s["signed_in"][-1]["active"] and [x["verified"] for x in s["logout_requests"][-3:]] == [False] * 3
            assert requests.post(f"{sp}/test/reset").status_code == 200 and state(sp)["signed_in"] == []
            assert requests.post(f"{sp}/test/idp-metadata-url", data={"url": "http://127.0.0.1:9/"}).ok
            assert requests.get(f"{sp}/login", allow_redirects=False).status_code == 502
            assert requests.post(f"{sp}/test/idp-metadata-url", data={"url": idp.entity_id}).ok
            assert requests.get(f"{sp}/login", allow_redirects=False).status_code == 302

            # SAML_SP_SIGN=no, SAML_SP_ALLOW_UNSOLICITED=yes: unsigned AuthnRequests, IdP-initiated SSO (once).
            sp2_proc, sp2 = spawn("saml_sp.py", {"SAML_SP_PORT": "0", "SAML_IDP_METADATA_URL": idp.entity_id,
                                                 "SAML_SP_SIGN": "no", "SAML_SP_ALLOW_UNSOLICITED": "yes"})
            assert 'AuthnRequestsSigned="false"' in requests.get(f"{sp2}/metadata").text
            assert "Signature" not in query(requests.get(f"{sp2}/login", allow_redirects=False).headers["Location"])
            idp.load_sp(sp2)
            unsolicited = {"SAMLResponse": b64(idp.response(None, sp2))}
            assert requests.post(f"{sp2}/acs", data=unsolicited).ok
            assert requests.post(f"{sp2}/acs", data=unsolicited).status_code == 400  # replayed assertion
            assert "already consumed" in state(sp2)["errors"][-1]["error"]
        finally:
            for p in (sp_proc, sp2_proc):
                if p:
                    p.terminate()
                    assert p.wait(10) == 0
            idp.httpd.shutdown()
    print("B. SSO and Single Logout with a local pysaml2 IdP: ok")


def test_saml_sp():
    check_sso_with_saml_idp()
    check_slo_with_local_idp()


if __name__ == "__main__":
    test_saml_sp()
