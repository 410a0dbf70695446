#!/usr/bin/env python3
"""Self-check for the Single Logout side of peers/saml_idp.py, without Latch.

    peers/.venv/bin/python peers/saml_idp_slo_check.py   (or: peers/.venv/bin/pytest peers/saml_idp_slo_check.py)

A. peers/saml_sp.py as the SP against saml_idp.py, both bindings: SSO (SP /login -> IdP /sso -> SP /acs)
   with the session remembered on both sides; IdP-initiated logout (IdP /test/logout -> SP /slo -> the
   SP's LogoutResponse back to IdP /slo, verified); NameID alone ends every session of that NameID;
   SP-initiated logout (SP /logout -> IdP /slo -> the IdP's LogoutResponse to SP /slo, verified by the
   SP); the hostile variants /test/logout makes (wrong key, SHA-1, expired, another Issuer); refusals at
   IdP /slo (replayed, tampered, unsigned, unsolicited).
B. An in-process pysaml2 SP (its metadata served here) against a second saml_idp.py: inbound messages
   the SP peer cannot be made to send (another key, SHA-1, expired, another Destination, unknown Issuer,
   a DTD; a LogoutResponse answering nothing of ours) are refused, and SAML_SP_SLO_URL overrides the
   metadata's SingleLogoutService.
"""

import base64
import datetime
import html
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from saml_sp import make_key_and_cert  # also silences pysaml2's deprecation warnings
from saml2 import BINDING_HTTP_POST as POST, BINDING_HTTP_REDIRECT as REDIRECT, saml, samlp
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.s_utils import deflate_and_base64_encode
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

HERE = os.path.dirname(os.path.abspath(__file__))
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"


def spawn(script, env):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, script)], env={**os.environ, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    assert line.startswith("ready http://127.0.0.1:"), (script, line)
    return p, line.split()[1]


def stop(*procs):
    for p in procs:
        if p:
            p.terminate()
            assert p.wait(10) == 0


def form(page):
    action = html.unescape(re.search(r'action="([^"]+)"', page).group(1))
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page)
    return action, {k: html.unescape(v) for k, v in fields}


def query(url):
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}


def inflate(b64):
    return zlib.decompress(base64.b64decode(b64), -15).decode()


def state(base):
    return requests.get(f"{base}/test/state").json()


def idp_cert(idp):
    der = base64.b64decode(re.search(r"X509Certificate>([^<]+)<", requests.get(f"{idp}/metadata").text).group(1))
    return x509.load_der_x509_certificate(der)


def query_signature_ok(url, field, cert, hash_cls=hashes.SHA256):
    """The HTTP-Redirect signature, checked over the raw query octets."""
    raw = dict(part.split("=", 1) for part in urllib.parse.urlsplit(url).query.split("&"))
    signed = "&".join(f"{k}={raw[k]}" for k in (field, "RelayState", "SigAlg") if k in raw).encode()
    try:
        cert.public_key().verify(base64.b64decode(urllib.parse.unquote(raw["Signature"])), signed,
                                 padding.PKCS1v15(), hash_cls())
        return True
    except InvalidSignature:
        return False


def logout(idp, **body):
    r = requests.post(f"{idp}/test/logout", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def sign_in(sp, idp, relay_state="r"):
    r = requests.get(f"{sp}/login", params={"relay_state": relay_state}, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith(f"{idp}/sso?"), r.text
    action, fields = form(requests.get(r.headers["Location"]).text)
    r = requests.post(action, data=fields)
    assert r.status_code == 200 and "Signed in as alice@example.com" in r.text, r.text
    sp_session, idp_session = state(sp)["signed_in"][-1], state(idp)["sessions"][-1]
    assert idp_session["session_index"] == sp_session["session_index"] and idp_session["active"], idp_session
    assert idp_session["name_id"] == "alice@example.com" and idp_session["name_id_format"] == EMAIL
    assert idp_session["sp_entity_id"] == f"{sp}/metadata" and idp_session["in_response_to"]
    return idp_session


def check_with_saml_sp():
    sp_proc = idp_proc = None
    try:
        sp_proc, sp = spawn("saml_sp.py", {"SAML_SP_PORT": "0", "SAML_IDP_METADATA_URL": "http://127.0.0.1:9/"})
        idp_proc, idp = spawn("saml_idp.py", {"SAML_IDP_PORT": "0", "SAML_SP_METADATA_URL": f"{sp}/metadata"})
        assert requests.post(f"{sp}/test/idp-metadata-url", data={"url": f"{idp}/metadata"}).ok
        md = requests.get(f"{idp}/metadata").text
        for binding in (REDIRECT, POST):
            assert f'<ns0:SingleLogoutService Binding="{binding}" Location="{idp}/slo" />' in md, md
        cert = idp_cert(idp)
        # Before any sign-in: /test/logout still works (the SP from the metadata, the user's NameID Format).
        out = logout(idp, name_id="nobody@example.com")
        assert inflate(query(out["url"])["SAMLRequest"]).count(f'Format="{EMAIL}"') == 1

        # IdP-initiated, HTTP-Redirect: signed URL to the SP's SLO; the SP's LogoutResponse verifies at the IdP.
        session = sign_in(sp, idp)
        out = logout(idp, name_id="alice@example.com", session_index=session["session_index"], binding="redirect",
                     relay_state="r 1")
        url = out["url"]
        assert url.startswith(f"{sp}/slo?SAMLRequest=") and "&RelayState=r%201&SigAlg=" in url, url
        assert query(url)["SigAlg"] == SIG_RSA_SHA256 and query_signature_ok(url, "SAMLRequest", cert)
        xml = inflate(query(url)["SAMLRequest"])
        assert f'Destination="{sp}/slo"' in xml and "NotOnOrAfter=" in xml and session["session_index"] in xml, xml
        r = requests.get(url, allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith(f"{idp}/slo?"), r.text
        sp_req = state(sp)["logout_requests"][-1]
        # pysaml2 re-encodes with quote_plus ("r+1") and so cannot verify what was signed as "r%201".
        assert sp_req["verified"] and sp_req["matched"] and sp_req["pysaml2_verified"] is False, sp_req
        assert sp_req["session_index"] == session["session_index"] and sp_req["relay_state"] == "r 1"
        r = requests.get(r.headers["Location"])
        assert r.status_code == 200 and "Logged out at the IdP" in r.text, r.text
        s = state(idp)
        lr = s["logout_responses"][-1]
        assert lr == {**lr, "verified": True, "status": SUCCESS, "in_response_to": out["id"], "binding": "redirect",
                      "issuer": f"{sp}/metadata", "relay_state": "r 1"}, lr
        assert s["sessions"][-1]["ended_by"] == "idp-initiated" and not state(sp)["signed_in"][-1]["active"]
        assert s["sent_logout_requests"][-1]["answer"] == SUCCESS

        # IdP-initiated, HTTP-POST: enveloped-signed request; the SP's auto-posted response verifies.
        session = sign_in(sp, idp)
        out = logout(idp, name_id="alice@example.com", session_index=session["session_index"], binding="post")
        f = out["form"]
        assert f["action"] == f"{sp}/slo" and "RelayState" not in f and "SignatureValue" in base64.b64decode(
            f["SAMLRequest"]).decode()
        assert form(requests.get(out["page_url"]).text) == (f["action"], {"SAMLRequest": f["SAMLRequest"]})
        r = requests.post(f["action"], data={"SAMLRequest": f["SAMLRequest"]})
        action, fields = form(r.text)
        assert r.status_code == 200 and action == f"{idp}/slo" and fields.get("SAMLResponse"), r.text
        r = requests.post(action, data=fields)
        assert r.status_code == 200 and "Logged out at the IdP" in r.text, r.text
        lr = state(idp)["logout_responses"][-1]
        assert lr["verified"] and lr["binding"] == "post" and lr["in_response_to"] == out["id"], lr
        assert state(sp)["logout_requests"][-1]["matched"] and not state(sp)["signed_in"][-1]["active"]
        assert requests.post(action, data=fields).status_code == 400  # answers nothing outstanding any more
        assert "no outstanding LogoutRequest" in state(idp)["logout_responses"][-1]["error"]

        # NameID alone: no SessionIndex in the request; every session of that NameID ends, at both ends.
        first, second = sign_in(sp, idp), sign_in(sp, idp)
        assert first["session_index"] != second["session_index"]
        out = logout(idp, name_id="alice@example.com")
        assert "SessionIndex" not in inflate(query(out["url"])["SAMLRequest"])
        assert [x["active"] for x in state(idp)["sessions"][-2:]] == [False, False]
        r = requests.get(out["url"], allow_redirects=False)
        assert r.status_code == 302 and requests.get(r.headers["Location"]).ok
        assert state(sp)["logout_requests"][-1]["session_index"] is None
        assert [x["active"] for x in state(sp)["signed_in"][-2:]] == [False, False]
        assert state(idp)["logout_responses"][-1]["verified"]

        # SP-initiated, HTTP-Redirect: the IdP verifies, ends its session, answers a signed 302 with RelayState.
        session = sign_in(sp, idp)
        r = requests.get(f"{sp}/logout", params={"binding": "redirect", "relay_state": "bye now"},
                         allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith(f"{idp}/slo?"), r.text
        sp_request_url = r.headers["Location"]
        r = requests.get(sp_request_url, allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith(f"{sp}/slo?SAMLResponse="), r.text
        back = r.headers["Location"]
        assert query(back)["RelayState"] == "bye now" and query_signature_ok(back, "SAMLResponse", cert)
        s = state(idp)
        lq = s["logout_requests"][-1]
        assert lq == {**lq, "verified": True, "name_id": "alice@example.com", "name_id_format": EMAIL,
                      "session_index": session["session_index"], "binding": "redirect", "relay_state": "bye now",
                      "issuer": f"{sp}/metadata", "sessions_ended": 1, "response_binding": "redirect"}, lq
        assert s["sessions"][-1]["ended_by"] == "sp-initiated"
        assert f'InResponseTo="{lq["id"]}"' in inflate(query(back)["SAMLResponse"])
        r = requests.get(back)
        assert r.status_code == 200 and "Signed out" in r.text, r.text
        sp_resp = state(sp)["logout_responses"][-1]
        assert sp_resp["verified"] and sp_resp["status"] == SUCCESS and sp_resp["relay_state"] == "bye now", sp_resp
        # Refused: the same LogoutRequest again; a tampered RelayState; neither message.
        assert requests.get(sp_request_url, allow_redirects=False).status_code == 400
        assert "replayed" in state(idp)["logout_requests"][-1]["error"]
        sign_in(sp, idp)
        r = requests.get(f"{sp}/logout", params={"relay_state": "a"}, allow_redirects=False)
        assert requests.get(r.headers["Location"].replace("RelayState=a", "RelayState=b")).status_code == 400
        assert "does not verify" in state(idp)["logout_requests"][-1]["error"]
        assert requests.get(f"{idp}/slo").status_code == 400 and state(idp)["sessions"][-1]["active"]

        # SP-initiated, HTTP-POST: enveloped signatures both ways, answered with an auto-post form.
        action, fields = form(requests.get(f"{sp}/logout", params={"binding": "post", "relay_state": "p"}).text)
        assert action == f"{idp}/slo"
        signed = base64.b64decode(fields["SAMLRequest"]).decode()
        unsigned = re.sub(r"<(\w+):Signature[\s>].*?</\1:Signature>", "", signed, flags=re.S)
        assert "Signature" not in unsigned, unsigned
        r = requests.post(action, data={"SAMLRequest": base64.b64encode(unsigned.encode()).decode()})
        assert r.status_code == 400 and "signature missing" in state(idp)["logout_requests"][-1]["error"], r.text
        r = requests.post(action, data=fields)
        action, back = form(r.text)
        assert r.status_code == 200 and action == f"{sp}/slo" and back["RelayState"] == "p", r.text
        assert "SignatureValue" in base64.b64decode(back["SAMLResponse"]).decode()
        lq = state(idp)["logout_requests"][-1]
        assert lq["verified"] and lq["binding"] == "post" and lq["response_binding"] == "post", lq
        r = requests.post(action, data=back)
        assert r.status_code == 200 and state(sp)["logout_responses"][-1]["verified"], r.text
        assert not state(idp)["sessions"][-1]["active"] and not state(sp)["signed_in"][-1]["active"]

        # The hostile variants of /test/logout: the SP peer refuses the ones it checks.
        session = sign_in(sp, idp)
        base = {"name_id": "alice@example.com", "session_index": session["session_index"]}
        out = logout(idp, **base, wrong_key=True)
        assert not query_signature_ok(out["url"], "SAMLRequest", cert)
        assert requests.get(out["url"], allow_redirects=False).status_code == 400
        out = logout(idp, **base, binding="post", wrong_key=True)
        assert requests.post(out["form"]["action"], data=out["form"]).status_code == 400
        out = logout(idp, **base, sig_alg="rsa-sha1")
        assert query(out["url"])["SigAlg"] == SIG_RSA_SHA1 and query_signature_ok(out["url"], "SAMLRequest", cert,
                                                                                  hashes.SHA1)
        assert requests.get(out["url"], allow_redirects=False).status_code == 400  # saml_sp.py refuses SHA-1
        out = logout(idp, **base, binding="post", sig_alg="rsa-sha1")
        assert "xmldsig#rsa-sha1" in base64.b64decode(out["form"]["SAMLRequest"]).decode()
        out = logout(idp, **base, sign=False)
        assert "Signature" not in query(out["url"]) and requests.get(out["url"]).status_code == 400
        out = logout(idp, **base, binding="post", sign=False)
        assert "Signature" not in base64.b64decode(out["form"]["SAMLRequest"]).decode()
        out = logout(idp, **base, expires_in=-60, issuer="http://127.0.0.1:9/evil", destination="http://127.0.0.1:9/x")
        xml = inflate(query(out["url"])["SAMLRequest"])
        nooa = re.search(r'NotOnOrAfter="([^"]+)"', xml).group(1)
        assert datetime.datetime.strptime(nooa, "%Y-%m-%dT%H:%M:%SZ") < datetime.datetime.utcnow(), xml
        assert ">http://127.0.0.1:9/evil</" in xml and 'Destination="http://127.0.0.1:9/x"' in xml
        assert out["url"].startswith(f"{sp}/slo?") and query_signature_ok(out["url"], "SAMLRequest", cert)
        assert requests.get(out["url"], allow_redirects=False).status_code == 400  # the SP checks the Issuer
        assert "NotOnOrAfter" not in inflate(query(logout(idp, **base, expires_in=None)["url"])["SAMLRequest"])
        assert requests.post(f"{idp}/test/logout", json={"binding": "post"}).status_code == 400
        assert requests.post(f"{idp}/test/logout", json={"name_id": "a", "binding": "soap"}).status_code == 400

        # Another user (POST /test/user): its NameID Format is the one /test/logout uses.
        bob = {"name_id": "bob", "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"}
        assert requests.post(f"{idp}/test/user", json=bob).json()["name_id"] == "bob"
        r = requests.get(f"{sp}/login", allow_redirects=False)
        r = requests.post(*form(requests.get(r.headers["Location"]).text))
        assert r.status_code == 200 and "Signed in as bob" in r.text, r.text
        out = logout(idp, name_id="bob", session_index=state(idp)["sessions"][-1]["session_index"], binding="post")
        assert f'Format="{bob["name_id_format"]}">bob<' in base64.b64decode(out["form"]["SAMLRequest"]).decode()
        r = requests.post(out["form"]["action"], data=out["form"])
        assert requests.post(*form(r.text)).ok and state(sp)["logout_requests"][-1]["matched"]
        assert state(idp)["logout_responses"][-1]["verified"]

        # Reset forgets everything but the user.
        assert requests.post(f"{idp}/test/reset").status_code == 200
        s = state(idp)
        assert not any(s[k] for k in ("sessions", "logout_requests", "logout_responses", "sent_logout_requests"))
        assert requests.get(f"{idp}/test/last-response").status_code == 404
        assert requests.get(f"{idp}/test/user").json()["name_id"] == "bob"
    finally:
        stop(sp_proc, idp_proc)
    print("A. SSO and Single Logout between saml_sp.py and saml_idp.py, both bindings: ok")


class LocalSp:
    """A pysaml2 SP whose only HTTP endpoint is /metadata; this script plays its browser and crafts its messages."""

    def __init__(self, workdir):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), None)
        base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.entity_id, self.slo = f"{base}/metadata", f"{base}/slo"
        key_file, cert_file = make_key_and_cert(workdir)
        os.mkdir(os.path.join(workdir, "other"))
        self.other_key_file, _ = make_key_and_cert(os.path.join(workdir, "other"))
        self.keys = {}
        for name, path in (("sp", key_file), ("other", self.other_key_file)):
            with open(path, "rb") as fh:
                self.keys[name] = serialization.load_pem_private_key(fh.read(), None)
        self.client = Saml2Client(config=SPConfig().load({
            "entityid": self.entity_id, "xmlsec_binary": "/usr/bin/xmlsec1", "key_file": key_file,
            "cert_file": cert_file, "metadata": {}, "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
            "service": {"sp": {"endpoints": {
                "assertion_consumer_service": [(f"{base}/acs", POST)],
                "single_logout_service": [(self.slo, REDIRECT), (self.slo, POST)]}}},
        }))
        xml = create_metadata_string(None, config=self.client.config)

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

    def logout_request(self, idp, issuer=None, destination=None, expire=None):
        _, req = self.client.create_logout_request(
            destination or f"{idp}/slo", f"{idp}/metadata", name_id=saml.NameID(format=EMAIL, text="alice@example.com"),
            expire=expire, sign=False)
        if issuer:
            req.issuer.text = issuer
        return req

    def redirect(self, idp, xml, sig_alg=SIG_RSA_SHA256, key="sp", hash_cls=hashes.SHA256):
        q = (f"SAMLRequest={urllib.parse.quote(deflate_and_base64_encode(str(xml)).decode(), safe='')}"
             f"&RelayState=x&SigAlg={urllib.parse.quote(sig_alg, safe='')}")
        sig = self.keys[key].sign(q.encode(), padding.PKCS1v15(), hash_cls())
        return requests.get(f"{idp}/slo?{q}&Signature={urllib.parse.quote(base64.b64encode(sig), safe='')}",
                            allow_redirects=False)

    def post(self, idp, req, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256):
        xml = self.client.sign(req, sign_alg=sign_alg, digest_alg=digest_alg)
        return requests.post(f"{idp}/slo", data={"SAMLRequest": base64.b64encode(str(xml).encode()).decode()},
                             allow_redirects=False)


def check_refusals_with_local_sp():
    idp_proc = idp2_proc = None
    with tempfile.TemporaryDirectory() as workdir:
        sp = LocalSp(workdir)
        try:
            idp_proc, idp = spawn("saml_idp.py", {"SAML_IDP_PORT": "0", "SAML_SP_METADATA_URL": sp.entity_id})
            sp.client.metadata.load("inline", requests.get(f"{idp}/metadata").text)
            ok = sp.redirect(idp, sp.logout_request(idp))
            assert ok.status_code == 302 and ok.headers["Location"].startswith(f"{sp.slo}?SAMLResponse="), ok.text
            assert query(ok.headers["Location"])["RelayState"] == "x"
            assert sp.post(idp, sp.logout_request(idp)).status_code == 200
            past = (datetime.datetime.utcnow() - datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for expected, send in (
                ("does not verify", lambda: sp.redirect(idp, sp.logout_request(idp), key="other")),
                ("refusing SigAlg", lambda: sp.redirect(idp, sp.logout_request(idp), SIG_RSA_SHA1,
                                                        hash_cls=hashes.SHA1)),
                ("expired", lambda: sp.redirect(idp, sp.logout_request(idp, expire=past))),
                ("Destination", lambda: sp.redirect(idp, sp.logout_request(idp, destination="http://127.0.0.1:9/slo"))),
                ("unknown Issuer", lambda: sp.redirect(idp, sp.logout_request(idp, issuer="http://127.0.0.1:9/md"))),
                ("SHA-1", lambda: sp.post(idp, sp.logout_request(idp), SIG_RSA_SHA1, DIGEST_SHA1)),
                ("Destination", lambda: sp.post(idp, sp.logout_request(idp, destination="http://127.0.0.1:9/slo"))),
                ("unknown Issuer", lambda: sp.post(idp, sp.logout_request(idp, issuer="http://127.0.0.1:9/md"))),
                ("EntitiesForbidden", lambda: requests.post(f"{idp}/slo", data={"SAMLRequest": base64.b64encode(
                    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]>' + str(sp.logout_request(idp)).encode()
                ).decode()})),
            ):
                r = send()
                rec = state(idp)["logout_requests"][-1]
                assert r.status_code == 400 and not rec["verified"] and expected in rec["error"], (expected, rec)
            # LogoutResponses: one answering nothing of ours is refused; the right one verifies, once.
            out = logout(idp, name_id="alice@example.com")
            msg = samlp.logout_request_from_string(inflate(query(out["url"])["SAMLRequest"]))
            for in_response_to, status in (("_not_ours", 400), (out["id"], 200), (out["id"], 400)):
                resp = sp.client.create_logout_response(msg, [POST], sign=False)
                resp.in_response_to = in_response_to
                signed = sp.client.sign(resp, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
                r = requests.post(f"{idp}/slo", data={"SAMLResponse": base64.b64encode(str(signed).encode()).decode()})
                rec = state(idp)["logout_responses"][-1]
                assert r.status_code == status and rec["verified"] == (status == 200), (r.text, rec)
            assert "no outstanding" in rec["error"]

            # SAML_SP_SLO_URL replaces the metadata's SingleLogoutService, for requests and responses.
            idp2_proc, idp2 = spawn("saml_idp.py", {"SAML_IDP_PORT": "0", "SAML_SP_METADATA_URL": sp.entity_id,
                                                    "SAML_SP_SLO_URL": "http://127.0.0.1:9/other-slo"})
            assert logout(idp2, name_id="a@example.com")["url"].startswith("http://127.0.0.1:9/other-slo?")
            r = sp.redirect(idp2, sp.logout_request(idp2))
            assert r.status_code == 302 and r.headers["Location"].startswith("http://127.0.0.1:9/other-slo?"), r.text
        finally:
            stop(idp_proc, idp2_proc)
            sp.httpd.shutdown()
    print("B. Refusals at the IdP's /slo, and SAML_SP_SLO_URL: ok")


def test_saml_idp_slo():
    check_with_saml_sp()
    check_refusals_with_local_sp()


if __name__ == "__main__":
    test_saml_idp_slo()
