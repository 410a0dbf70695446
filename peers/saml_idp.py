#!/usr/bin/env python3
"""A real SAML 2.0 Identity Provider (pysaml2) for Latch's end-to-end tests.

Run with the peers venv (scripts/install-peers.sh creates it):

    SAML_IDP_PORT=18080 \
    SAML_SP_METADATA_URL='http://127.0.0.1:3000/samlp/metadata?connection=acme' \
    peers/.venv/bin/python peers/saml_idp.py

Environment:
  SAML_IDP_PORT         required; listens on 127.0.0.1:PORT (0 picks a free port).
                        Entity id: http://127.0.0.1:PORT/metadata
  SAML_SP_METADATA_URL  required; the SP's metadata, fetched when the first AuthnRequest
                        arrives (and again if a request names an unknown SP or ACS URL).
  SAML_IDP_SIGN         optional; assertion (default) | response | both.

Endpoints:
  GET  /metadata            the IdP's metadata (IDPSSODescriptor, signing cert, SSO HTTP-Redirect)
  GET  /sso?SAMLRequest=..  HTTP-Redirect AuthnRequest -> 200 HTML auto-post form (HTTP-POST binding)
  POST /test/user           JSON {"name_id", "name_id_format", "attributes": {name: [values]}}
  GET  /test/last-response  the last SAML Response produced (XML)

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

warnings.filterwarnings("ignore", category=DeprecationWarning)
try:  # pysaml2 touches cipher modes that newer `cryptography` releases deprecate
    from cryptography.utils import CryptographyDeprecationWarning

    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.assertion import Policy
from saml2.attribute_converter import AttributeConverter
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.s_utils import do_ava, factory
from saml2.saml import NAME_FORMAT_BASIC
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

log = logging.getLogger("saml_idp")

NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"

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


class Idp:
    def __init__(self, base_url, sp_metadata_url, sign_mode, workdir):
        self.base_url = base_url
        self.entity_id = f"{base_url}/metadata"
        self.sp_metadata_url = sp_metadata_url
        self.sign_assertion = sign_mode in ("assertion", "both")
        self.sign_response = sign_mode in ("response", "both")
        self.lock = threading.Lock()
        self.user = json.loads(json.dumps(DEFAULT_USER))
        self.last_response = ""
        self.sp_metadata_loaded = False

        xmlsec = shutil.which("xmlsec1")
        if not xmlsec:
            raise SystemExit("saml_idp: the xmlsec1 command is required (scripts/install-deps.sh installs it)")
        key_file, cert_file = make_key_and_cert(workdir)
        self.cert_file = cert_file
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
            log.info("AuthnRequest %s from %s -> Response to %s for %s", msg.id, sp_entity_id, destination, user["name_id"])

        b64 = base64.b64encode(xml.encode()).decode()
        q = lambda s: html.escape(s, quote=True)  # noqa: E731
        fields = f'<input type="hidden" name="SAMLResponse" value="{q(b64)}"/>\n'
        if relay_state is not None:
            fields += f'<input type="hidden" name="RelayState" value="{q(relay_state)}"/>\n'
        page = (
            "<!DOCTYPE html>\n<html><head><title>SAML POST</title></head><body>\n"
            f'<form method="post" action="{q(destination)}">\n'
            f"{fields}"
            '<noscript><input type="submit" value="Continue"/></noscript>\n'
            "</form>\n"
            "<script>document.forms[0].submit();</script>\n"
            "</body></html>\n"
        )
        return 200, "text/html; charset=utf-8", page

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

        def _send(self, status, ctype, body):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/metadata":
                return self._send(200, "application/samlmetadata+xml", idp.metadata_xml)
            if url.path == "/sso":
                q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
                one = lambda k: q[k][0] if k in q else None  # noqa: E731
                if not one("SAMLRequest"):
                    return self._send(400, "text/plain", "missing SAMLRequest\n")
                try:
                    status, ctype, body = idp.sso(one("SAMLRequest"), one("RelayState"), one("SigAlg"), one("Signature"))
                except Exception as exc:  # noqa: BLE001
                    log.exception("sso failed")
                    status, ctype, body = 500, "text/plain", f"IdP error: {exc!r}\n"
                return self._send(status, ctype, body)
            if url.path == "/test/last-response":
                with idp.lock:
                    xml = idp.last_response
                if not xml:
                    return self._send(404, "text/plain", "no response produced yet\n")
                return self._send(200, "application/xml", xml)
            if url.path == "/test/user":
                with idp.lock:
                    return self._send(200, "application/json", json.dumps(idp.user))
            return self._send(404, "text/plain", "not found\n")

        def do_POST(self):  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/test/user":
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    user = idp.set_user(self.rfile.read(length))
                except Exception as exc:  # noqa: BLE001
                    return self._send(400, "text/plain", f"bad user: {exc}\n")
                return self._send(200, "application/json", json.dumps(user))
            return self._send(404, "text/plain", "not found\n")

    return Handler


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="saml_idp: %(levelname)s %(message)s")
    logging.getLogger("saml2").setLevel(logging.WARNING)
    port = os.environ.get("SAML_IDP_PORT")
    sp_md = os.environ.get("SAML_SP_METADATA_URL")
    sign_mode = (os.environ.get("SAML_IDP_SIGN") or "assertion").strip().lower()
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
        idp = Idp(base_url, sp_md, sign_mode, workdir)
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
