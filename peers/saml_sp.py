#!/usr/bin/env python3
"""A real SAML 2.0 Service Provider (pysaml2) for Latch's end-to-end tests (Latch as the IdP).

Run with the peers venv (scripts/install-peers.sh creates it):

    SAML_SP_PORT=18081 \
    SAML_IDP_METADATA_URL='http://127.0.0.1:3000/samlp/metadata/CLIENT_ID' \
    peers/.venv/bin/python peers/saml_sp.py

Environment:
  SAML_SP_PORT               required; listens on 127.0.0.1:PORT (0 picks a free port).
                             Entity id http://127.0.0.1:PORT/metadata, ACS /acs (HTTP-POST),
                             SingleLogoutService /slo (HTTP-Redirect and HTTP-POST).
  SAML_IDP_METADATA_URL      required; the IdP's metadata, fetched on first use, again at every
                             /login and /logout, and once more when an inbound message fails.
  SAML_SP_SIGN               optional yes (default) | no: sign the AuthnRequests, LogoutRequests and
                             LogoutResponses it sends (RSA-SHA256; HTTP-Redirect: query-string signature).
  SAML_SP_ALLOW_UNSOLICITED  optional yes | no (default): accept IdP-initiated Responses.

Endpoints:
  GET  /metadata             SP metadata (signing cert, ACS, SLO both bindings, WantAssertionsSigned)
  GET  /cert                 the SP certificate (PEM)
  GET  /login?relay_state=X&binding=redirect|post   SP-initiated SSO (302, or auto-post form)
  POST /acs                  Response: 200 "Signed in as NAME_ID", or 400 with the error
  GET  /logout?binding=redirect|post&relay_state=X  LogoutRequest for the most recent active session
  GET|POST /slo              LogoutResponse (to our LogoutRequest) or LogoutRequest (from the IdP;
                             answered with a LogoutResponse in the same binding, RelayState echoed)
  GET  /test/state           JSON: entity_id, signed_in, logout_responses, logout_requests, errors
  POST /test/reset           clears the recorded state
  POST /test/idp-metadata-url   form field url=...: use another IdP metadata URL from now on (so a test
                             can start the SP, read /cert, create the Latch app, then point the SP at it)
signed_in entries stay listed after a logout ends them, with "active": false. Every LogoutRequest
and LogoutResponse received is listed, with "verified" and, when refused (HTTP 400), "error".

Signatures: assertions or responses must be signed (pysaml2's checks: audience, recipient,
destination, InResponseTo, time bounds). Inbound LogoutRequests must be signed. HTTP-Redirect
signatures are verified over the query string exactly as received; "pysaml2_verified" records
pysaml2's own check (verify_redirect_signature re-encodes the decoded values with urlencode).

stdout carries exactly one line, "ready http://127.0.0.1:PORT"; logs go to stderr.
"""

import base64
import datetime
import html
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import warnings
from functools import partialmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

warnings.filterwarnings("ignore", category=DeprecationWarning)
try:  # pysaml2 touches cipher modes that newer `cryptography` releases deprecate
    from cryptography.utils import CryptographyDeprecationWarning

    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.mdstore import locations
from saml2.metadata import create_metadata_string
from saml2.sigver import verify_redirect_signature
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512

log = logging.getLogger("saml_sp")
BINDINGS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
HTML = ("Content-Type", "text/html; charset=utf-8")
QUERY_SIG_HASHES = {SIG_RSA_SHA256: hashes.SHA256, SIG_RSA_SHA384: hashes.SHA384, SIG_RSA_SHA512: hashes.SHA512}


def make_key_and_cert(directory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Latch test SAML SP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = os.path.join(directory, "sp-key.pem"), os.path.join(directory, "sp-cert.pem")
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def form_page(action, fields):
    """The HTTP-POST binding: an auto-submitting form, with a submit button when JavaScript is off."""
    q = lambda s: html.escape(s, quote=True)  # noqa: E731
    inputs = "".join(f'<input type="hidden" name="{q(k)}" value="{q(v)}"/>\n' for k, v in fields.items() if v)
    return ("<!DOCTYPE html>\n<html><head><title>SAML POST</title></head><body>\n"
            f'<form method="post" action="{q(action)}">\n{inputs}'
            '<noscript><input type="submit" value="Continue"/></noscript>\n</form>\n'
            "<script>document.forms[0].submit();</script>\n</body></html>\n")


class Sp:
    def __init__(self, base_url, idp_metadata_url, sign, allow_unsolicited, workdir):
        self.entity_id, self.acs_url, self.slo_url = f"{base_url}/metadata", f"{base_url}/acs", f"{base_url}/slo"
        self.idp_metadata_url, self.sign = idp_metadata_url, sign
        self.idp_id = None
        self.lock = threading.Lock()
        self.outstanding = {}  # AuthnRequest ID -> RelayState
        self.pending_logouts = {}  # LogoutRequest ID -> the session it ends
        self.seen_assertions = set()
        self.reset()
        xmlsec = shutil.which("xmlsec1")
        if not xmlsec:
            raise SystemExit("saml_sp: the xmlsec1 command is required (scripts/install-deps.sh installs it)")
        key_file, cert_file = make_key_and_cert(workdir)
        with open(cert_file) as f:
            self.cert_pem = f.read()
        conf = {
            "entityid": self.entity_id, "name": "Latch test SAML SP", "xmlsec_binary": xmlsec,
            "key_file": key_file, "cert_file": cert_file, "metadata": {}, "accepted_time_diff": 60,
            "signing_algorithm": SIG_RSA_SHA256, "digest_algorithm": DIGEST_SHA256,
            "only_use_keys_in_metadata": True, "allow_unknown_attributes": True,
            "service": {"sp": {
                "name": "Latch test SAML SP",
                "endpoints": {
                    "assertion_consumer_service": [(self.acs_url, BINDING_HTTP_POST)],
                    "single_logout_service": [(self.slo_url, BINDING_HTTP_REDIRECT), (self.slo_url, BINDING_HTTP_POST)],
                },
                "authn_requests_signed": sign, "logout_requests_signed": sign, "logout_responses_signed": sign,
                "want_assertions_signed": True,  # what the metadata says; see below for what is enforced
                "want_response_signed": False, "allow_unsolicited": allow_unsolicited,
            }},
        }
        self.config = SPConfig().load(conf)
        self.client = Saml2Client(config=self.config)
        # Enforce "a signed assertion or a signed response" (Latch's signResponse=true signs only the latter).
        self.client.want_assertions_signed = False
        self.client.want_assertions_or_response_signed = True
        metadata = create_metadata_string(None, config=self.config).decode()
        self.metadata_xml = re.sub(r"<(\w+):Extensions>.*?</\1:Extensions>", "", metadata, count=1, flags=re.S)

    def reset(self):
        self.signed_in, self.logout_responses, self.logout_requests, self.errors = [], [], [], []

    def state(self):
        return {"entity_id": self.entity_id, "signed_in": self.signed_in, "logout_responses": self.logout_responses,
                "logout_requests": self.logout_requests, "errors": self.errors}

    def fail(self, endpoint, exc, status=400, rec=None):
        text = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else str(exc)
        if rec is not None:
            rec["error"] = text
        log.warning("%s: %s", endpoint, text)
        self.errors.append({"endpoint": endpoint, "error": text})
        return status, [("Content-Type", "text/plain; charset=utf-8")], f"{endpoint}: {text}\n"

    # -- IdP metadata ---------------------------------------------------------------------------

    def load_metadata(self):
        req = urllib.request.Request(self.idp_metadata_url, headers={"Accept": "application/samlmetadata+xml"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            xml = resp.read().decode()
        md, self.idp_id = self.client.metadata, None
        md.metadata.clear()
        md.load("inline", xml)
        idps = list(md.with_descriptor("idpsso"))
        if len(idps) != 1:
            raise ValueError(f"expected one IDPSSODescriptor in {self.idp_metadata_url}, found {idps}")
        self.idp_id = idps[0]
        log.info("loaded IdP metadata from %s: %s", self.idp_metadata_url, self.idp_id)

    def retry_with_fresh_metadata(self, fn):
        """Runs fn; if it fails, refetches the IdP metadata (keys may have changed) and runs it once more."""
        if self.idp_id is None:
            self.load_metadata()
        try:
            return fn()
        except Exception as first:  # noqa: BLE001
            try:
                self.load_metadata()
            except Exception:  # noqa: BLE001
                raise first from None
            return fn()

    def idp_location(self, service, binding):
        srvs = getattr(self.client.metadata, service)(self.idp_id, binding, "idpsso")
        location = next(locations(srvs or []), None)
        if not location:
            raise ValueError(f"the IdP metadata has no {service} for {binding}")
        return location

    # -- sending --------------------------------------------------------------------------------

    def outbound(self, binding, xml, destination, relay_state, response):
        """HTTP answer carrying a SAML message; HTTP-POST messages were signed when created."""
        if binding == BINDING_HTTP_REDIRECT:
            info = self.client.apply_binding(binding, str(xml), destination, relay_state or "", response=response,
                                             sign=self.sign, sigalg=SIG_RSA_SHA256)
            return 302, [("Location", dict(info["headers"])["Location"])], ""
        field = "SAMLResponse" if response else "SAMLRequest"
        b64 = base64.b64encode(str(xml).encode()).decode()
        return 200, [HTML], form_page(destination, {field: b64, "RelayState": relay_state})

    def login(self, binding, relay_state):
        try:
            self.load_metadata()
            destination = self.idp_location("single_sign_on_service", binding)
            req_id, req = self.client.create_authn_request(
                destination, binding=BINDING_HTTP_POST, sign=self.sign and binding == BINDING_HTTP_POST,
                sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
        except Exception as exc:  # noqa: BLE001
            return self.fail("/login", exc, 502)
        self.outstanding[req_id] = relay_state or ""
        log.info("AuthnRequest %s -> %s (%s)", req_id, destination, binding)
        return self.outbound(binding, req, destination, relay_state, False)

    # -- ACS ------------------------------------------------------------------------------------

    def acs(self, saml_response, relay_state):
        try:
            resp = self.retry_with_fresh_metadata(lambda: self.client.parse_authn_request_response(
                saml_response, BINDING_HTTP_POST, outstanding=dict(self.outstanding)))
            # pysaml2 ignores the result of Response.verify(): a wrong Destination leaves no assertion.
            if resp is None or resp.assertion is None or resp.name_id is None:
                raise ValueError("the Response did not verify (Destination not this ACS, or no valid assertion)")
            if resp.assertion.id in self.seen_assertions:
                raise ValueError(f"assertion {resp.assertion.id} was already consumed")
        except Exception as exc:  # noqa: BLE001
            return self.fail("/acs", exc)
        self.seen_assertions.add(resp.assertion.id)
        self.outstanding.pop(resp.in_response_to, None)
        nid, a = resp.name_id, resp.assertion
        attrs = {}
        for stmt in a.attribute_statement:
            for attr in stmt.attribute:
                attrs.setdefault(attr.name, []).extend(v.text for v in attr.attribute_value)
        m = re.search(r"<((?:[\w.-]+:)?)Assertion[\s>].*?</\1Assertion>", resp.xmlstr, re.S)
        self.signed_in.append({
            "name_id": nid.text, "name_id_format": nid.format, "name_qualifier": nid.name_qualifier,
            "sp_name_qualifier": nid.sp_name_qualifier,
            "session_index": a.authn_statement[0].session_index if a.authn_statement else None,
            "attributes": attrs, "in_response_to": resp.in_response_to, "issuer": resp.issuer(),
            "relay_state": relay_state, "assertion_xml": m.group(0) if m else str(a), "active": True,
        })
        log.info("signed in %s (InResponseTo %s)", nid.text, resp.in_response_to)
        return 200, [HTML], (
            f"<!DOCTYPE html>\n<html><body><p>Signed in as {html.escape(nid.text)}</p></body></html>\n")

    # -- Single Logout --------------------------------------------------------------------------

    def logout(self, binding, relay_state):
        session = next((s for s in reversed(self.signed_in) if s["active"]), None)
        if session is None:
            return self.fail("/logout", "no signed-in subject", 409)
        try:
            self.load_metadata()
            destination = self.idp_location("single_logout_service", binding)
            name_id = saml.NameID(format=session["name_id_format"], name_qualifier=session["name_qualifier"],
                                  sp_name_qualifier=session["sp_name_qualifier"], text=session["name_id"])
            req_id, req = self.client.create_logout_request(
                destination, self.idp_id, name_id=name_id,
                session_indexes=[session["session_index"]] if session["session_index"] else None,
                sign=self.sign and binding == BINDING_HTTP_POST, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
        except Exception as exc:  # noqa: BLE001
            return self.fail("/logout", exc, 502)
        self.pending_logouts[req_id] = session
        log.info("LogoutRequest %s for %s -> %s (%s)", req_id, session["name_id"], destination, binding)
        return self.outbound(binding, req, destination, relay_state, False)

    def verify_query(self, raw_query, field):
        """The HTTP-Redirect signature, over the query string's parameters exactly as received.

        Returns pysaml2's own verdict (it re-encodes the decoded values) for comparison."""
        raw = {}
        for part in raw_query.split("&"):
            k, _, v = part.partition("=")
            raw.setdefault(urllib.parse.unquote_plus(k), v)
        if "Signature" not in raw or "SigAlg" not in raw:
            raise ValueError(f"the HTTP-Redirect {field} carries no Signature/SigAlg")
        sigalg = urllib.parse.unquote_plus(raw["SigAlg"])
        if sigalg not in QUERY_SIG_HASHES:
            raise ValueError(f"refusing SigAlg {sigalg}")
        signed = "&".join(f"{k}={raw[k]}" for k in (field, "RelayState", "SigAlg") if k in raw).encode()
        sig = base64.b64decode(urllib.parse.unquote_plus(raw["Signature"]))
        certs = [c for _, c in self.client.metadata.certs(self.idp_id, "any", "signing")]
        for cert in certs:
            key = x509.load_der_x509_certificate(base64.b64decode(cert)).public_key()
            try:
                key.verify(sig, signed, padding.PKCS1v15(), QUERY_SIG_HASHES[sigalg]())
                break
            except InvalidSignature:
                pass
        else:
            raise ValueError("the query-string signature does not verify with the IdP's signing certificate(s)")
        decoded = {k: urllib.parse.unquote_plus(raw[k]) for k in (field, "RelayState", "SigAlg", "Signature") if k in raw}
        return any(verify_redirect_signature(decoded, self.client.sec.sec_backend, c) for c in certs)

    def slo_response(self, binding, txt, relay_state, raw_query):
        rec = dict.fromkeys(("status", "sub_status", "in_response_to", "issuer"), None)
        rec.update(binding=binding, relay_state=relay_state, verified=False)
        self.logout_responses.append(rec)

        def check():
            xml = self.client.unravel(txt, binding, "logout_response")
            xml = xml.decode() if isinstance(xml, bytes) else xml
            if binding == BINDING_HTTP_REDIRECT:
                rec["pysaml2_verified"] = self.verify_query(raw_query, "SAMLResponse")
                return samlp.logout_response_from_string(xml)
            return self.client.sec.correctly_signed_logout_response(xml, must=True)

        try:
            msg = self.retry_with_fresh_metadata(check)
            code = msg.status.status_code if msg.status is not None else None
            rec.update(in_response_to=msg.in_response_to, issuer=msg.issuer.text.strip() if msg.issuer else None,
                       status=code.value if code else None,
                       sub_status=code.status_code.value if code is not None and code.status_code else None)
            if rec["issuer"] != self.idp_id:
                raise ValueError(f"Issuer {rec['issuer']!r} is not the IdP {self.idp_id!r}")
            if msg.destination and msg.destination != self.slo_url:
                raise ValueError(f"Destination {msg.destination!r} is not {self.slo_url!r}")
            session = self.pending_logouts.pop(msg.in_response_to, None)
            if session is None:
                raise ValueError(f"InResponseTo {msg.in_response_to!r} answers no LogoutRequest of ours")
        except Exception as exc:  # noqa: BLE001
            return self.fail("/slo", exc, rec=rec)
        rec["verified"] = True
        session["active"] = False
        log.info("LogoutResponse to %s: %s %s", msg.in_response_to, rec["status"], rec["sub_status"] or "")
        return 200, [HTML], (
            f"<!DOCTYPE html>\n<html><body><p>Signed out</p><p>{html.escape(rec['status'] or '')}</p></body></html>\n")

    def slo_request(self, binding, txt, relay_state, raw_query):
        rec = dict.fromkeys(("id", "name_id", "name_id_format", "session_index", "issuer"), None)
        rec.update(binding=binding, relay_state=relay_state, verified=False, matched=False)
        self.logout_requests.append(rec)

        def check():
            if binding == BINDING_HTTP_REDIRECT:  # pysaml2 checks these only for an IdP's AuthnRequests
                rec["pysaml2_verified"] = self.verify_query(raw_query, "SAMLRequest")
            req = self.client.parse_logout_request(txt, binding)
            if binding == BINDING_HTTP_POST and req.message.signature is None:
                raise ValueError("the HTTP-POST LogoutRequest is not signed")
            if not req.verify():
                raise ValueError("LogoutRequest IssueInstant out of range")
            return req

        try:
            req = self.retry_with_fresh_metadata(check)
            msg = req.message
            issuer = msg.issuer.text.strip() if msg.issuer is not None and msg.issuer.text else None
            indexes = [s.text for s in msg.session_index]
            rec.update(id=msg.id, name_id=msg.name_id.text if msg.name_id else None,
                       name_id_format=msg.name_id.format if msg.name_id else None,
                       session_index=indexes[0] if indexes else None, session_indexes=indexes, issuer=issuer)
            if issuer != self.idp_id:
                raise ValueError(f"Issuer {issuer!r} is not the IdP {self.idp_id!r}")
        except Exception as exc:  # noqa: BLE001
            return self.fail("/slo", exc, rec=rec)
        rec["verified"] = True
        for s in self.signed_in:
            if (s["active"] and s["name_id"] == rec["name_id"] and (not indexes or s["session_index"] in indexes)
                    and (not rec["name_id_format"] or rec["name_id_format"] == s["name_id_format"])):
                s["active"], rec["matched"] = False, True
        log.info("LogoutRequest %s from the IdP for %s (matched a session: %s)", msg.id, rec["name_id"], rec["matched"])
        other = BINDING_HTTP_POST if binding == BINDING_HTTP_REDIRECT else BINDING_HTTP_REDIRECT
        for out in (binding, other):  # answer in the request's binding when the IdP has an SLO for it
            try:
                destination = self.client.response_args(msg, [out])["destination"]
            except Exception:  # noqa: BLE001
                continue
            resp = self.client.create_logout_response(msg, bindings=[out], sign=self.sign and out == BINDING_HTTP_POST,
                                                      sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
            rec["response_binding"] = out
            return self.outbound(out, resp, destination, relay_state, True)
        return self.fail("/slo", "the IdP metadata has no SingleLogoutService to answer at", 502)


def make_handler(sp):
    class Handler(BaseHTTPRequestHandler):
        server_version = "LatchTestSamlSP/1"

        def log_message(self, fmt, *args):
            sys.stderr.write("saml_sp: %s %s\n" % (self.address_string(), fmt % args))

        def _send(self, status, headers, body):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self, method):
            url = urllib.parse.urlsplit(self.path)
            q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
            form = {}
            if method == "POST":
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
            binding = BINDINGS.get(q.get("binding") or "redirect")
            text = lambda s: (200, [("Content-Type", "text/plain; charset=utf-8")], s)  # noqa: E731
            if method == "GET" and url.path == "/metadata":
                return 200, [("Content-Type", "application/samlmetadata+xml")], sp.metadata_xml
            if method == "GET" and url.path == "/cert":
                return text(sp.cert_pem)
            with sp.lock:
                if method == "GET" and url.path in ("/login", "/logout"):
                    if binding is None:
                        return 400, [("Content-Type", "text/plain")], "binding must be redirect or post\n"
                    return (sp.login if url.path == "/login" else sp.logout)(binding, q.get("relay_state"))
                if method == "POST" and url.path == "/acs":
                    if not form.get("SAMLResponse"):
                        return sp.fail("/acs", "missing SAMLResponse")
                    return sp.acs(form["SAMLResponse"], form.get("RelayState"))
                if url.path == "/slo":
                    slo_binding, params = (BINDING_HTTP_REDIRECT, q) if method == "GET" else (BINDING_HTTP_POST, form)
                    for field, handle in (("SAMLResponse", sp.slo_response), ("SAMLRequest", sp.slo_request)):
                        if params.get(field):
                            return handle(slo_binding, params[field], params.get("RelayState"), url.query)
                    return sp.fail("/slo", "neither SAMLRequest nor SAMLResponse")
                if method == "GET" and url.path == "/test/state":
                    return 200, [("Content-Type", "application/json")], json.dumps(sp.state())
                if method == "POST" and url.path == "/test/reset":
                    sp.reset()
                    return text("reset\n")
                if method == "POST" and url.path == "/test/idp-metadata-url" and form.get("url"):
                    sp.idp_metadata_url, sp.idp_id = form["url"], None  # fetched again on next use
                    return text(f"IdP metadata URL: {sp.idp_metadata_url}\n")
            return 404, [("Content-Type", "text/plain")], "not found\n"

        def _handle(self, method):
            try:
                status, headers, body = self._dispatch(method)
            except Exception as exc:  # noqa: BLE001
                log.exception("%s %s failed", method, self.path)
                status, headers, body = 500, [("Content-Type", "text/plain")], f"SP error: {exc!r}\n"
            self._send(status, headers, body)

        do_GET, do_POST = partialmethod(_handle, "GET"), partialmethod(_handle, "POST")

    return Handler


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="saml_sp: %(levelname)s %(message)s")
    logging.getLogger("saml2").setLevel(logging.WARNING)
    port = os.environ.get("SAML_SP_PORT")
    idp_md = os.environ.get("SAML_IDP_METADATA_URL")
    flags = {}
    for name, default in (("SAML_SP_SIGN", "yes"), ("SAML_SP_ALLOW_UNSOLICITED", "no")):
        value = (os.environ.get(name) or default).strip().lower()
        if value not in ("yes", "no"):
            raise SystemExit(f"saml_sp: {name} must be yes or no")
        flags[name] = value == "yes"
    if port is None or not port.isdigit():
        raise SystemExit("saml_sp: SAML_SP_PORT (a port number) is required")
    if not idp_md:
        raise SystemExit("saml_sp: SAML_IDP_METADATA_URL is required")

    httpd = ThreadingHTTPServer(("127.0.0.1", int(port)), None)
    httpd.daemon_threads = True
    base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    workdir = tempfile.mkdtemp(prefix="latch-saml-sp-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sp = Sp(base_url, idp_md, flags["SAML_SP_SIGN"], flags["SAML_SP_ALLOW_UNSOLICITED"], workdir)
        httpd.RequestHandlerClass = make_handler(sp)
        log.info("entity id %s, signing %s, unsolicited %s, IdP metadata %s", sp.entity_id,
                 flags["SAML_SP_SIGN"], flags["SAML_SP_ALLOW_UNSOLICITED"], idp_md)
        print(f"ready {base_url}", flush=True)
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
