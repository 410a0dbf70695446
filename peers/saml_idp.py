#!/usr/bin/env python3
"""A real SAML 2.0 Identity Provider (pysaml2) for Latch's end-to-end tests.

Run with the peers venv (scripts/install-peers.sh creates it):

    SAML_IDP_PORT=18080 \
    SAML_SP_METADATA_URL='http://127.0.0.1:3000/samlp/metadata?connection=acme' \
    peers/.venv/bin/python peers/saml_idp.py

Environment:
  SAML_IDP_PORT         required; listens on 127.0.0.1:PORT (0 picks a free port).
                        Entity id: http://127.0.0.1:PORT/metadata
  SAML_SP_METADATA_URL  required; the SP's metadata, fetched when first needed, and again when a request
                        names an unknown SP or ACS URL, no SingleLogoutService is found, or a logout
                        message fails to verify.
  SAML_IDP_SIGN         optional; assertion (default) | response | both.
  SAML_SP_SLO_URL       optional; the SP's SingleLogoutService (both bindings) instead of its metadata's.

Endpoints:
  GET  /metadata            the IdP's metadata (IDPSSODescriptor, signing cert, SSO HTTP-Redirect,
                            SingleLogoutService /slo HTTP-Redirect and HTTP-POST)
  GET  /sso?SAMLRequest=..  HTTP-Redirect AuthnRequest -> 200 HTML auto-post form (HTTP-POST binding);
                            each Response issued is remembered as a session
  GET|POST /slo             a LogoutResponse to one of our LogoutRequests -> 200 "Logged out at the IdP";
                            a LogoutRequest from the SP -> its sessions (NameID, and SessionIndex if any)
                            ended, a signed LogoutResponse (Success) in the same binding (302 or auto-post
                            form), RelayState echoed. Refused with 400 (recorded, nothing ended): unsigned,
                            badly signed, SHA-1, unknown Issuer, InResponseTo not outstanding, another
                            Destination, expired NotOnOrAfter, replayed request ID.
  POST /test/logout         JSON {"name_id", "session_index"?, "binding": "redirect"|"post", "relay_state"?}:
                            an IdP-initiated LogoutRequest to the SP's SingleLogoutService, not sent but
                            answered {"id", "url"} (redirect: the signed URL) or {"id", "form": {"action",
                            "SAMLRequest", "RelayState" (only if given)}, "page_url"} (post; page_url serves
                            the auto-post page from this origin). No session_index (or null): NameID alone.
                            NameID Format and qualifiers as issued in the latest session for name_id. The
                            sessions named end at once. Hostile variants: "expires_in" (NotOnOrAfter in
                            seconds, default 300, negative: expired, null: none), "sign": false, "sig_alg":
                            "rsa-sha1", "wrong_key": true, "issuer", "destination" (the attribute only),
                            "name_id_format", "dtd": true (a DOCTYPE declaring an external entity, not
                            referenced, ahead of the message; its signature still verifies).
  GET  /test/logout-form/ID the auto-post page of /test/logout's HTTP-POST LogoutRequest ID
  POST /test/user           JSON {"name_id", "name_id_format", "attributes": {name: [values]}}
  GET  /test/last-response  the last SAML Response produced (XML)
  GET  /test/state          JSON: entity_id, sessions, logout_requests and logout_responses (received; with
                            "verified", and "error" when refused), sent_logout_requests; bindings are
                            "redirect" | "post"
  POST /test/reset          forgets sessions, records and the last Response (not the user)

Signing is RSA-SHA256: HTTP-Redirect messages carry SigAlg + Signature over the query string as sent (values
percent-encoded with quote(safe="")), HTTP-POST messages an enveloped signature. Inbound HTTP-Redirect
signatures are verified over the raw query octets (pysaml2's verify_redirect_signature re-encodes them),
always with a signing certificate from the SP metadata.

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
import time
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

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, class_name, saml, samlp
from saml2.assertion import Policy
from saml2.attribute_converter import AttributeConverter
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.s_utils import deflate_and_base64_encode, do_ava, factory
from saml2.saml import NAME_FORMAT_BASIC
from saml2.server import Server
from saml2.sigver import pre_signature_part, read_cert_from_file
from saml2.time_util import str_to_time
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512

log = logging.getLogger("saml_idp")

NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
BINDINGS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
BINDING_NAMES = {v: k for k, v in BINDINGS.items()}
SIG_ALGS = {"rsa-sha256": SIG_RSA_SHA256, "rsa-sha1": SIG_RSA_SHA1}
SIG_HASHES = {SIG_RSA_SHA1: hashes.SHA1, SIG_RSA_SHA256: hashes.SHA256, SIG_RSA_SHA384: hashes.SHA384,
              SIG_RSA_SHA512: hashes.SHA512}  # SHA-1 only for sending (hostile tests); refused inbound
HTML = "text/html; charset=utf-8"

DEFAULT_USER = {
    "name_id": "alice@example.com",
    "name_id_format": NAMEID_EMAIL,
    "attributes": {
        "email": ["alice@example.com"],
        "givenName": ["Alice"],
        "sn": ["Liddell"],
        "displayName": ["Alice Liddell"],
    },
}


class LiteralBasicConverter(AttributeConverter):
    """Emits attributes under exactly the names given, NameFormat basic.

    pysaml2's stock converters rename known attributes to OIDs (uri format) or to
    urn:mace:dir:attribute-def:* names (basic format), and its fallback converter
    lower-cases names; a test IdP must send what the test asked for."""

    def __init__(self):
        super().__init__(NAME_FORMAT_BASIC)

    def to_(self, attrvals):
        return [
            factory(saml.Attribute, name=key, name_format=NAME_FORMAT_BASIC, attribute_value=do_ava(value))
            for key, value in attrvals.items()
        ]


class ReleaseEverything(Policy):
    """Release every attribute of the current user, whatever the SP metadata requests."""

    def restrict(self, ava, sp_entity_id, metadata=None):
        return dict(ava)


def make_key_and_cert(directory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Latch test SAML IdP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file = os.path.join(directory, "idp-key.pem")
    cert_file = os.path.join(directory, "idp-cert.pem")
    with open(key_file, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def form_page(action, fields):
    """The HTTP-POST binding: an auto-submitting form (fields whose value is None are left out)."""
    q = lambda s: html.escape(s, quote=True)  # noqa: E731
    inputs = "".join(f'<input type="hidden" name="{k}" value="{q(v)}"/>\n' for k, v in fields.items() if v is not None)
    return (
        "<!DOCTYPE html>\n<html><head><title>SAML POST</title></head><body>\n"
        f'<form method="post" action="{q(action)}">\n{inputs}'
        '<noscript><input type="submit" value="Continue"/></noscript>\n</form>\n'
        "<script>document.forms[0].submit();</script>\n</body></html>\n"
    )


def with_dtd(xml):
    """xml with a DOCTYPE that declares an external entity (XXE bait) after any XML declaration. The
    entity is not referenced, so the message and a signature over it (enveloped, or over the query
    string) are otherwise unchanged: only a refusal of DTDs turns it away."""
    m = re.match(r"(\s*<\?xml[^>]*\?>)?\s*<([\w:.-]+)", xml)
    if m is None:
        raise ValueError("not an XML element")
    head = m.group(1) or ""
    return f'{head}<!DOCTYPE {m.group(2)} [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{xml[len(head):]}'


def text(status, body):
    return status, [("Content-Type", "text/plain")], body


class Idp:
    def __init__(self, base_url, sp_metadata_url, sign_mode, workdir, sp_slo_url=None):
        self.base_url = base_url
        self.entity_id = f"{base_url}/metadata"
        self.slo_url = f"{base_url}/slo"
        self.sp_metadata_url = sp_metadata_url
        self.sp_slo_url = sp_slo_url
        self.sign_assertion = sign_mode in ("assertion", "both")
        self.sign_response = sign_mode in ("response", "both")
        self.lock = threading.Lock()
        self.user = json.loads(json.dumps(DEFAULT_USER))
        self.sp_metadata_loaded = False
        self.reset()

        xmlsec = shutil.which("xmlsec1")
        if not xmlsec:
            raise SystemExit("saml_idp: the xmlsec1 command is required (scripts/install-deps.sh installs it)")
        key_file, cert_file = make_key_and_cert(workdir)
        self.cert_file, self.key_file = cert_file, key_file
        other = os.path.join(workdir, "other")  # an unrelated key, for "wrong_key" in /test/logout
        os.mkdir(other)
        self.other_key_file, other_cert_file = make_key_and_cert(other)
        self.other_cert = read_cert_from_file(other_cert_file)
        self.keys = {}
        for name, path in (("idp", key_file), ("other", self.other_key_file)):
            with open(path, "rb") as f:
                self.keys[name] = serialization.load_pem_private_key(f.read(), None)
        conf = {
            "entityid": self.entity_id,
            "name": "Latch test SAML IdP",
            "xmlsec_binary": xmlsec,
            "key_file": key_file,
            "cert_file": cert_file,
            "metadata": {},
            "accepted_time_diff": 60,
            "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
            "service": {
                "idp": {
                    "name": "Latch test SAML IdP",
                    "endpoints": {
                        "single_sign_on_service": [(f"{base_url}/sso", BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [
                            (self.slo_url, BINDING_HTTP_REDIRECT),
                            (self.slo_url, BINDING_HTTP_POST),
                        ],
                    },
                    "name_id_format": [NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_TRANSIENT, NAMEID_UNSPECIFIED],
                    "want_authn_requests_signed": False,
                    "sign_assertion": self.sign_assertion,
                    "sign_response": self.sign_response,
                },
            },
        }
        self.config = IdPConfig().load(conf)
        self.server = Server(config=self.config)
        self.server.config.attribute_converters = [LiteralBasicConverter()]
        self.policy = ReleaseEverything(
            {"default": {"lifetime": {"minutes": 5}, "name_form": NAME_FORMAT_BASIC}}
        )
        # Drop pysaml2's <md:Extensions> (alg:DigestMethod/SigningMethod lists that advertise md5/sha1
        # too): the metadata is unsigned, so this edit is safe, and SPs need none of it.
        metadata = create_metadata_string(None, config=self.config).decode()
        self.metadata_xml = re.sub(r"<(\w+):Extensions>.*?</\1:Extensions>", "", metadata, count=1, flags=re.S)

    # -- SP metadata -------------------------------------------------------------------------

    def load_sp_metadata(self):
        req = urllib.request.Request(self.sp_metadata_url, headers={"Accept": "application/samlmetadata+xml"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            xml = resp.read().decode()
        md = self.server.metadata
        md.metadata.clear()
        md.load("inline", xml)
        self.sp_metadata_loaded = True
        log.info("loaded SP metadata from %s: %s", self.sp_metadata_url, ", ".join(md.keys()))

    # -- SSO -----------------------------------------------------------------------------------

    def sso(self, saml_request, relay_state, sigalg, signature):
        """Returns (status, content_type, body)."""
        with self.lock:
            if not self.sp_metadata_loaded:
                try:
                    self.load_sp_metadata()
                except Exception as exc:  # noqa: BLE001
                    return 502, "text/plain", f"cannot fetch SP metadata from {self.sp_metadata_url}: {exc}\n"
            try:
                req = self.server.parse_authn_request(
                    saml_request, BINDING_HTTP_REDIRECT, relay_state=relay_state, sigalg=sigalg, signature=signature
                )
                if req is None:
                    raise ValueError("pysaml2 returned no request")
                msg = req.message
            except Exception as exc:  # noqa: BLE001
                log.warning("bad AuthnRequest: %r", exc)
                return 400, "text/plain", f"cannot parse AuthnRequest: {exc!r}\n"

            sp_entity_id = msg.issuer.text.strip() if msg.issuer is not None and msg.issuer.text else ""
            try:
                args = self.server.response_args(msg, [BINDING_HTTP_POST])
            except Exception as first:  # noqa: BLE001
                # Latch may have been reconfigured since the metadata was fetched: fetch it again once.
                try:
                    self.load_sp_metadata()
                    args = self.server.response_args(msg, [BINDING_HTTP_POST])
                except Exception as exc:  # noqa: BLE001
                    log.warning("no HTTP-POST ACS for %s (%r / %r)", sp_entity_id, first, exc)
                    return (
                        400,
                        "text/plain",
                        f"unknown SP {sp_entity_id!r} or ACS URL {msg.assertion_consumer_service_url!r} "
                        f"not in its metadata (HTTP-POST binding): {exc}\n",
                    )
            destination = args["destination"]

            user = self.user
            name_id = saml.NameID(format=user["name_id_format"], text=user["name_id"])
            identity = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in user["attributes"].items()}
            signed = self.server.create_authn_response(
                identity,
                in_response_to=msg.id,
                destination=destination,
                sp_entity_id=sp_entity_id,
                name_id=name_id,
                authn={"class_ref": PASSWORDPROTECTEDTRANSPORT, "authn_auth": self.entity_id},
                sign_assertion=self.sign_assertion,
                sign_response=self.sign_response,
                sign_alg=SIG_RSA_SHA256,
                digest_alg=DIGEST_SHA256,
                release_policy=self.policy,
            )
            xml = signed if isinstance(signed, str) else str(signed)
            self.last_response = xml
            self.remember_session(xml, sp_entity_id, msg.id)
            log.info("AuthnRequest %s from %s -> Response to %s for %s", msg.id, sp_entity_id, destination, user["name_id"])

        fields = {"SAMLResponse": base64.b64encode(xml.encode()).decode(), "RelayState": relay_state}
        return 200, HTML, form_page(destination, fields)

    def remember_session(self, xml, sp_entity_id, in_response_to):
        assertion = samlp.response_from_string(xml).assertion[0]
        nid, authn = assertion.subject.name_id, assertion.authn_statement
        self.sessions.append({
            "name_id": nid.text, "name_id_format": nid.format, "name_qualifier": nid.name_qualifier,
            "sp_name_qualifier": nid.sp_name_qualifier, "session_index": authn[0].session_index if authn else None,
            "sp_entity_id": sp_entity_id, "in_response_to": in_response_to, "active": True, "ended_by": None,
        })

    # -- test state ----------------------------------------------------------------------------

    def reset(self):
        self.last_response = ""
        self.sessions, self.logout_requests, self.logout_responses, self.sent_logout_requests = [], [], [], []
        self.pending = {}  # our LogoutRequest ID -> its entry in sent_logout_requests
        self.post_pages = {}  # our HTTP-POST LogoutRequest ID -> its auto-post page
        self.seen_request_ids = set()

    def state(self):
        return {"entity_id": self.entity_id, "sessions": self.sessions, "logout_requests": self.logout_requests,
                "logout_responses": self.logout_responses, "sent_logout_requests": self.sent_logout_requests}

    def end_sessions(self, name_id, session_indexes, ended_by, name_id_format=None):
        ended = 0
        for s in self.sessions:
            if (
                s["active"]
                and s["name_id"] == name_id
                and (not session_indexes or s["session_index"] in session_indexes)
                and (not name_id_format or name_id_format == s["name_id_format"])
            ):
                s["active"], s["ended_by"], ended = False, ended_by, ended + 1
        return ended

    # -- SP metadata for Single Logout -----------------------------------------------------------

    def with_sp_metadata(self, fn):
        """Runs fn with the SP metadata loaded; if it fails, fetches the metadata again and runs it once more."""
        if not self.sp_metadata_loaded:
            self.load_sp_metadata()
        try:
            return fn()
        except Exception as first:  # noqa: BLE001
            try:
                self.load_sp_metadata()
            except Exception:  # noqa: BLE001
                raise first from None
            return fn()

    def sp_slo(self, sp_entity_id, binding, response):
        """The SP's SingleLogoutService URL for binding (ResponseLocation first, for a response)."""
        if self.sp_slo_url:
            return self.sp_slo_url
        for srv in self.server.metadata.single_logout_service(sp_entity_id, binding, "spsso") or []:
            location = (response and srv.get("response_location")) or srv.get("location")
            if location:
                return location
        raise LookupError(f"the metadata of {sp_entity_id!r} has no SingleLogoutService for {binding}")

    # -- sending -------------------------------------------------------------------------------

    def redirect_url(self, destination, field, xml, relay_state, sign=True, sig_alg=SIG_RSA_SHA256, key="idp"):
        """The HTTP-Redirect binding; the signature covers the query string exactly as it is sent."""
        params = [(field, deflate_and_base64_encode(xml).decode())]
        if relay_state is not None:
            params.append(("RelayState", relay_state))
        if sign:
            params.append(("SigAlg", sig_alg))
        query = "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in params)
        if sign:
            sig = self.keys[key].sign(query.encode(), padding.PKCS1v15(), SIG_HASHES[sig_alg]())
            query += "&Signature=" + urllib.parse.quote(base64.b64encode(sig).decode(), safe="")
        return f"{destination}{'&' if '?' in destination else '?'}{query}"

    def enveloped(self, msg, sig_alg=SIG_RSA_SHA256, key="idp"):
        """The message as XML with an enveloped signature (HTTP-POST binding), base64-encoded."""
        cert, key_file = (self.server.sec.my_cert, self.key_file)
        if key == "other":
            cert, key_file = self.other_cert, self.other_key_file
        digest = DIGEST_SHA1 if sig_alg == SIG_RSA_SHA1 else DIGEST_SHA256
        msg.signature = pre_signature_part(msg.id, cert, 1, sign_alg=sig_alg, digest_alg=digest)
        xml = self.server.sec.sign_statement(msg.to_string(), class_name(msg), key_file=key_file, node_id=msg.id)
        return base64.b64encode(xml.encode() if isinstance(xml, str) else xml).decode()

    # -- IdP-initiated logout (POST /test/logout) ----------------------------------------------

    def start_logout(self, body):
        data = json.loads(body or b"{}")
        if not isinstance(data, dict) or not data.get("name_id"):
            raise ValueError("expected a JSON object with a non-empty name_id")
        binding = BINDINGS.get(data.get("binding") or "redirect")
        sig_alg = SIG_ALGS.get(data.get("sig_alg") or "rsa-sha256")
        if binding is None or sig_alg is None:
            raise ValueError("binding must be redirect or post; sig_alg rsa-sha256 or rsa-sha1")
        name_id, session_index = str(data["name_id"]), data.get("session_index")
        relay_state, sign, key = data.get("relay_state"), data.get("sign", True) is not False, "idp"
        dtd = with_dtd if data.get("dtd") else (lambda xml: xml)
        if data.get("wrong_key"):
            key = "other"
        issued = [s for s in self.sessions if s["name_id"] == name_id]
        issued = [s for s in issued if s["session_index"] == session_index] or issued
        base = issued[-1] if issued else None

        def sp_and_destination():
            sp_id = base["sp_entity_id"] if base else next(iter(self.server.metadata.with_descriptor("spsso")), None)
            if not sp_id:
                raise LookupError(f"no SP in the metadata at {self.sp_metadata_url}")
            return sp_id, self.sp_slo(sp_id, binding, False)

        sp_id, destination = self.with_sp_metadata(sp_and_destination)
        fmt = data.get("name_id_format") or (base or self.user)["name_id_format"]
        qualifiers = {k: base[k] for k in ("name_qualifier", "sp_name_qualifier")} if base else {}
        expire, expires_in = None, data.get("expires_in", 300)
        if expires_in is not None:
            expire = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(expires_in))
            expire = expire.strftime("%Y-%m-%dT%H:%M:%SZ")
        indexes = [str(session_index)] if session_index is not None else None
        req_id, req = self.server.create_logout_request(
            data.get("destination") or destination, sp_id, name_id=saml.NameID(text=name_id, format=fmt, **qualifiers),
            expire=expire, sign=False, session_indexes=indexes)
        if data.get("issuer"):
            req.issuer.text = str(data["issuer"])
        rec = {"id": req_id, "name_id": name_id, "name_id_format": fmt, "session_index": session_index,
               "sp_entity_id": sp_id, "destination": destination, "binding": BINDING_NAMES[binding],
               "relay_state": relay_state, "sessions_ended": self.end_sessions(name_id, indexes, "idp-initiated")}
        self.sent_logout_requests.append(rec)
        self.pending[req_id] = rec
        log.info("LogoutRequest %s for %s (SessionIndex %s) -> %s", req_id, name_id, session_index, destination)
        if binding == BINDING_HTTP_REDIRECT:
            return {"id": req_id, "url": self.redirect_url(destination, "SAMLRequest", dtd(str(req)), relay_state,
                                                           sign, sig_alg, key)}
        xml = self.enveloped(req, sig_alg, key) if sign else base64.b64encode(str(req).encode()).decode()
        if data.get("dtd"):
            xml = base64.b64encode(with_dtd(base64.b64decode(xml).decode()).encode()).decode()
        fields = {"SAMLRequest": xml, **({"RelayState": relay_state} if relay_state is not None else {})}
        self.post_pages[req_id] = form_page(destination, fields)
        return {"id": req_id, "form": {"action": destination, **fields},
                "page_url": f"{self.base_url}/test/logout-form/{req_id}"}

    # -- /slo ----------------------------------------------------------------------------------

    def verify_query(self, raw_query, field, sp_entity_id):
        """Checks the HTTP-Redirect signature over the query's parameters exactly as received."""
        raw = {}
        for part in raw_query.split("&"):
            k, _, v = part.partition("=")
            raw.setdefault(urllib.parse.unquote_plus(k), v)
        if "Signature" not in raw or "SigAlg" not in raw:
            raise ValueError(f"the HTTP-Redirect {field} carries no Signature/SigAlg")
        sig_alg = urllib.parse.unquote_plus(raw["SigAlg"])
        if sig_alg not in SIG_HASHES or sig_alg == SIG_RSA_SHA1:
            raise ValueError(f"refusing SigAlg {sig_alg}")
        signed = "&".join(f"{k}={raw[k]}" for k in (field, "RelayState", "SigAlg") if k in raw).encode()
        sig = base64.b64decode(urllib.parse.unquote_plus(raw["Signature"]))
        for _, cert in self.server.metadata.certs(sp_entity_id, "any", "signing"):
            key = x509.load_der_x509_certificate(base64.b64decode(cert)).public_key()
            try:
                return key.verify(sig, signed, padding.PKCS1v15(), SIG_HASHES[sig_alg]())
            except InvalidSignature:
                pass
        raise ValueError(f"the query-string signature does not verify with a signing certificate of {sp_entity_id}")

    def inbound(self, binding, txt, raw_query, msgtype, rec):
        """Decodes, parses and verifies an inbound message; fills rec's common fields."""
        field = "SAMLResponse" if msgtype == "logout_response" else "SAMLRequest"

        def check():
            xml = self.server.unravel(txt, binding, msgtype)
            xml = xml.decode() if isinstance(xml, bytes) else xml
            msg = getattr(samlp, f"{msgtype}_from_string")(xml)
            if msg is None:
                raise ValueError(f"not a {msgtype}")
            rec.update(id=msg.id, issuer=msg.issuer.text.strip() if msg.issuer is not None and msg.issuer.text else "")
            if rec["issuer"] not in self.server.metadata.keys():
                raise ValueError(f"unknown Issuer {rec['issuer']!r} (not in the SP metadata)")
            if binding == BINDING_HTTP_REDIRECT:
                self.verify_query(raw_query, field, rec["issuer"])
            elif "xmldsig#rsa-sha1" in xml or "xmldsig#sha1" in xml:
                raise ValueError("refusing a SHA-1 XML signature")
            else:
                msg = self.server.sec.correctly_signed_message(xml, msgtype, must=True)
            return msg

        msg = self.with_sp_metadata(check)
        if msg.version != "2.0":
            raise ValueError(f"Version {msg.version!r}")
        if msg.destination and msg.destination != self.slo_url:
            raise ValueError(f"Destination {msg.destination!r} is not {self.slo_url!r}")
        return msg

    def refuse(self, rec, exc):
        rec["error"] = f"{type(exc).__name__}: {exc}"
        log.warning("/slo: refused %s", rec["error"])
        return text(400, f"/slo: {rec['error']}\n")

    def slo_response(self, binding, txt, relay_state, raw_query):
        rec = dict.fromkeys(("id", "status", "sub_status", "in_response_to", "issuer"), None)
        rec.update(binding=BINDING_NAMES[binding], relay_state=relay_state, verified=False)
        self.logout_responses.append(rec)
        try:
            msg = self.inbound(binding, txt, raw_query, "logout_response", rec)
            code = msg.status.status_code if msg.status is not None else None
            rec.update(in_response_to=msg.in_response_to, status=code.value if code is not None else None,
                       sub_status=code.status_code.value if code is not None and code.status_code else None)
            sent = self.pending.get(msg.in_response_to)
            if sent is None:
                raise ValueError(f"InResponseTo {msg.in_response_to!r} answers no outstanding LogoutRequest of ours")
            if rec["issuer"] != sent["sp_entity_id"]:
                raise ValueError(f"Issuer {rec['issuer']!r} is not {sent['sp_entity_id']!r}")
        except Exception as exc:  # noqa: BLE001
            return self.refuse(rec, exc)
        del self.pending[msg.in_response_to]
        rec["verified"], sent["answer"] = True, rec["status"]
        log.info("LogoutResponse to %s from %s: %s", msg.in_response_to, rec["issuer"], rec["status"])
        return 200, [("Content-Type", HTML)], "<html><body><p>Logged out at the IdP</p></body></html>\n"

    def slo_request(self, binding, txt, relay_state, raw_query):
        rec = dict.fromkeys(("id", "name_id", "name_id_format", "session_index", "issuer"), None)
        rec.update(binding=BINDING_NAMES[binding], relay_state=relay_state, verified=False)
        self.logout_requests.append(rec)
        try:
            msg = self.inbound(binding, txt, raw_query, "logout_request", rec)
            indexes = [s.text for s in msg.session_index]
            nid = msg.name_id or saml.NameID()
            rec.update(name_id=nid.text, name_id_format=nid.format, session_index=(indexes or [None])[0],
                       session_indexes=indexes)
            if msg.not_on_or_after and str_to_time(msg.not_on_or_after) <= time.gmtime():
                raise ValueError(f"expired: NotOnOrAfter {msg.not_on_or_after}")
            if msg.id in self.seen_request_ids:
                raise ValueError(f"replayed LogoutRequest ID {msg.id}")
            self.seen_request_ids.add(msg.id)
            other = BINDING_HTTP_POST if binding == BINDING_HTTP_REDIRECT else BINDING_HTTP_REDIRECT
            try:  # answer in the request's binding if the SP has an SLO for it, else in the other one
                out, destination = binding, self.sp_slo(rec["issuer"], binding, True)
            except LookupError:
                out, destination = other, self.sp_slo(rec["issuer"], other, True)
        except Exception as exc:  # noqa: BLE001
            return self.refuse(rec, exc)
        rec["verified"] = True
        rec["sessions_ended"] = self.end_sessions(rec["name_id"], indexes, "sp-initiated", rec["name_id_format"])
        resp = self.server._status_response(samlp.LogoutResponse, self.server._issuer(), None, sign=False,
                                            in_response_to=msg.id, destination=destination)
        rec.update(response_id=resp.id, response_binding=BINDING_NAMES[out])
        log.info("LogoutRequest %s from %s for %s: %d session(s) ended; LogoutResponse -> %s (%s)",
                 msg.id, rec["issuer"], rec["name_id"], rec["sessions_ended"], destination, rec["response_binding"])
        if out == BINDING_HTTP_REDIRECT:
            return 302, [("Location", self.redirect_url(destination, "SAMLResponse", str(resp), relay_state))], ""
        fields = {"SAMLResponse": self.enveloped(resp), "RelayState": relay_state}
        return 200, [("Content-Type", HTML)], form_page(destination, fields)

    def set_user(self, body):
        data = json.loads(body or b"{}")
        if not isinstance(data, dict) or not data.get("name_id"):
            raise ValueError("expected a JSON object with a non-empty name_id")
        attrs = data.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise ValueError("attributes must be an object of name -> [values]")
        user = {
            "name_id": str(data["name_id"]),
            "name_id_format": str(data.get("name_id_format") or NAMEID_UNSPECIFIED),
            "attributes": {
                str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in attrs.items()
            },
        }
        with self.lock:
            self.user = user
        return user


def make_handler(idp):
    class Handler(BaseHTTPRequestHandler):
        server_version = "LatchTestSamlIdP/1"

        def log_message(self, fmt, *args):
            sys.stderr.write("saml_idp: %s %s\n" % (self.address_string(), fmt % args))

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
            q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            one = lambda k: q[k][0] if k in q else None  # noqa: E731
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            json_ok = lambda obj: (200, [("Content-Type", "application/json")], json.dumps(obj))  # noqa: E731
            if method == "GET" and url.path == "/metadata":
                return 200, [("Content-Type", "application/samlmetadata+xml")], idp.metadata_xml
            if method == "GET" and url.path == "/sso":
                if not one("SAMLRequest"):
                    return text(400, "missing SAMLRequest\n")
                status, ctype, page = idp.sso(one("SAMLRequest"), one("RelayState"), one("SigAlg"), one("Signature"))
                return status, [("Content-Type", ctype)], page
            if url.path == "/test/user":  # set_user takes the lock itself
                if method == "GET":
                    return json_ok(idp.user)
                try:
                    return json_ok(idp.set_user(body))
                except Exception as exc:  # noqa: BLE001
                    return text(400, f"bad user: {exc}\n")
            with idp.lock:
                if url.path == "/slo":
                    binding, params, raw_query = BINDING_HTTP_REDIRECT, q, url.query
                    if method == "POST":
                        binding, params, raw_query = BINDING_HTTP_POST, urllib.parse.parse_qs(body.decode("utf-8", "replace")), ""
                    for field, handle in (("SAMLResponse", idp.slo_response), ("SAMLRequest", idp.slo_request)):
                        if (params.get(field) or [""])[0]:
                            return handle(binding, params[field][0], (params.get("RelayState") or [None])[0], raw_query)
                    return text(400, "/slo: neither SAMLRequest nor SAMLResponse\n")
                if method == "GET" and url.path == "/test/last-response":
                    if not idp.last_response:
                        return text(404, "no response produced yet\n")
                    return 200, [("Content-Type", "application/xml")], idp.last_response
                if method == "POST" and url.path == "/test/logout":
                    try:
                        return json_ok(idp.start_logout(body))
                    except (ValueError, TypeError) as exc:
                        return text(400, f"bad logout: {exc}\n")
                    except Exception as exc:  # noqa: BLE001
                        log.warning("/test/logout: %r", exc)
                        return text(502, f"cannot start the logout: {exc!r}\n")
                if method == "GET" and url.path.startswith("/test/logout-form/"):
                    page = idp.post_pages.get(url.path.rsplit("/", 1)[1])
                    return (200, [("Content-Type", HTML)], page) if page else text(404, "no such LogoutRequest\n")
                if method == "GET" and url.path == "/test/state":
                    return json_ok(idp.state())
                if method == "POST" and url.path == "/test/reset":
                    idp.reset()
                    return text(200, "reset\n")
            return 404, [("Content-Type", "text/plain")], "not found\n"

        def _handle(self, method):
            try:
                status, headers, body = self._dispatch(method)
            except Exception as exc:  # noqa: BLE001
                log.exception("%s %s failed", method, self.path)
                status, headers, body = 500, [("Content-Type", "text/plain")], f"IdP error: {exc!r}\n"
            self._send(status, headers, body)

        do_GET, do_POST = partialmethod(_handle, "GET"), partialmethod(_handle, "POST")

    return Handler


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="saml_idp: %(levelname)s %(message)s")
    logging.getLogger("saml2").setLevel(logging.WARNING)
    port = os.environ.get("SAML_IDP_PORT")
    sp_md = os.environ.get("SAML_SP_METADATA_URL")
    sign_mode = (os.environ.get("SAML_IDP_SIGN") or "assertion").strip().lower()
    sp_slo = os.environ.get("SAML_SP_SLO_URL") or None
    if port is None or not port.isdigit():
        raise SystemExit("saml_idp: SAML_IDP_PORT (a port number) is required")
    if not sp_md:
        raise SystemExit("saml_idp: SAML_SP_METADATA_URL is required")
    if sign_mode not in ("assertion", "response", "both"):
        raise SystemExit("saml_idp: SAML_IDP_SIGN must be assertion, response or both")

    httpd = ThreadingHTTPServer(("127.0.0.1", int(port)), None)
    httpd.daemon_threads = True
    base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    workdir = tempfile.mkdtemp(prefix="latch-saml-idp-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        idp = Idp(base_url, sp_md, sign_mode, workdir, sp_slo)
        httpd.RequestHandlerClass = make_handler(idp)
        log.info("entity id %s, signing %s, SP metadata %s, cert %s", idp.entity_id, sign_mode, sp_md, idp.cert_file)
        print(f"ready {base_url}", flush=True)
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
