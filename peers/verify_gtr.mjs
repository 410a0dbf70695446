// Verifies Global Token Revocation requests Latch sent, with panva's `jose` (not Latch's JOSE
// stack): reads {"jwks": {...}, "issuer": "...", "requests": [{"authorization", "content_type",
// "body", "endpoint", "client_id"}]} on stdin and prints one verdict per request as JSON.
// A request passes when its bearer token verifies against the JWKS with RS256 and the header
// says `typ: global-token-revocation+jwt`, and the claims are Okta's: iss, sub (the app's
// client_id), aud (the endpoint), iat, nbf, exp 5 minutes after iat, jti.
import { createLocalJWKSet, jwtVerify, decodeProtectedHeader } from "jose";

const input = JSON.parse(await new Promise((resolve) => {
  let s = "";
  process.stdin.on("data", (c) => (s += c));
  process.stdin.on("end", () => resolve(s));
}));
const keys = createLocalJWKSet(input.jwks);
const out = [];
for (const r of input.requests) {
  const verdict = { ok: false };
  try {
    const m = /^Bearer (.+)$/.exec(r.authorization || "");
    if (!m) throw new Error("no bearer token");
    const header = decodeProtectedHeader(m[1]);
    const { payload, protectedHeader } = await jwtVerify(m[1], keys, {
      algorithms: ["RS256"],
      typ: "global-token-revocation+jwt",
      issuer: input.issuer,
      audience: r.endpoint,
      subject: r.client_id,
      requiredClaims: ["iat", "nbf", "exp", "jti"],
    });
    if (payload.exp - payload.iat !== 300) throw new Error(`lifetime ${payload.exp - payload.iat}`);
    if (!(r.content_type || "").startsWith("application/json")) throw new Error(`content type ${r.content_type}`);
    verdict.header = { ...header, ...protectedHeader };
    verdict.claims = payload;
    verdict.body = JSON.parse(r.body);
    verdict.ok = true;
  } catch (e) {
    verdict.error = String(e && e.message || e);
  }
  out.push(verdict);
}
process.stdout.write(JSON.stringify(out));
