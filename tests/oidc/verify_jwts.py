"""Two independent JWT libraries, PyJWT and joserfc, verify latchkey's tokens against its JWKS.
Reads {"jwks_uri", "issuer", "tokens": [{"token", "audience", "alg"}]} from stdin; prints
{"verified": [[alg, pyjwt_sub, joserfc_sub], ...]}. Any refusal is an exception (exit 1).

usage: python verify_jwts.py < request.json
"""

import json
import sys

import jwt as pyjwt
import requests
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet


def main() -> None:
    request = json.load(sys.stdin)
    jwks = requests.get(request["jwks_uri"], timeout=10).json()
    pyjwt_keys = pyjwt.PyJWKClient(request["jwks_uri"])
    jose_keys = KeySet.import_key_set(jwks)
    verified = []
    for item in request["tokens"]:
        token, audience, alg = item["token"], item["audience"], item["alg"]
        signing_key = pyjwt_keys.get_signing_key_from_jwt(token)
        by_pyjwt = pyjwt.decode(
            token,
            signing_key.key,
            algorithms=[alg],
            audience=audience,
            issuer=request["issuer"],
        )
        decoded = jose_jwt.decode(token, jose_keys, algorithms=[alg])
        jose_jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": request["issuer"]},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        ).validate(decoded.claims)
        if decoded.header["alg"] != alg:
            raise SystemExit(f"joserfc read alg {decoded.header['alg']}, expected {alg}")
        verified.append([alg, by_pyjwt["sub"], decoded.claims["sub"]])
    print(json.dumps({"verified": verified}), flush=True)


if __name__ == "__main__":
    main()
