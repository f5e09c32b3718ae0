// HS256 tokens for the auth tests, signed with node:crypto (and deliberately broken ones:
// another key, `alg: none`, HS512), so the server's checks are tested against tokens it did
// not mint itself.
import crypto from "node:crypto";

export const SECRET = "interop-test-secret-that-is-long-enough-for-hs256";

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
export const now = () => Math.floor(Date.now() / 1000);

/** A signed token. `alg` may be `HS256`, `HS512` or `none`; `secret` another key. */
export function mint(claims, { alg = "HS256", secret = SECRET } = {}) {
  const head = b64({ alg, typ: "JWT" });
  const body = b64({ exp: now() + 600, ...claims });
  if (alg === "none") return `${head}.${body}.`;
  const hash = { HS256: "sha256", HS512: "sha512" }[alg];
  const sig = crypto.createHmac(hash, secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** A good token for `user` in `org`. */
export const tokenFor = (org, user, extra = {}) => mint({ org_id: org, user_id: user, ...extra });

/** Tokens that must all be refused with `unauthorized` (server: --jwt-issuer gw --jwt-audience api --jwt-leeway-secs 0). */
export function badTokens(org, user) {
  const ok = { org_id: org, user_id: user, iss: "gw", aud: "api" };
  return {
    "another key": mint(ok, { secret: "x".repeat(48) }),
    "alg none": mint(ok, { alg: "none" }),
    HS512: mint(ok, { alg: "HS512" }),
    expired: mint({ ...ok, exp: now() - 5 }),
    "not yet valid": mint({ ...ok, nbf: now() + 600 }),
    "wrong aud": mint({ ...ok, aud: "other" }),
    "wrong iss": mint({ ...ok, iss: "evil" }),
    "no exp": mint({ ...ok, exp: undefined }),
    "not a jwt": "hello.world",
  };
}
