"""authlib's OpenID Connect client signing a person in with latchkey, on its own: the discovery
document through authlib's validators (OpenID Connect Discovery and RP-Initiated Logout),
dynamic registration, code + PKCE + nonce, the ID token through authlib's CodeIDToken rules
(iss, aud, azp, exp, iat, nonce, at_hash, auth_time), userinfo, and the logout URL. The person
is played by the test: this script prints {"authorize": url} and reads the callback URL from
stdin; it prints what it learnt as one JSON line.

usage: python authlib_client.py <issuer> <redirect-uri> <post-logout-redirect-uri>
"""

import json
import sys
import time
import warnings
from urllib.parse import urlencode

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc import rpinitiated
from authlib.oidc.core import CodeIDToken, UserInfo
from authlib.oidc.discovery import OpenIDProviderMetadata

warnings.simplefilter("ignore")  # authlib.jose announces its move to joserfc
from authlib.jose import JsonWebKey, jwt  # noqa: E402


def main() -> None:
    issuer, redirect_uri, post_logout_uri = sys.argv[1:4]
    metadata = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    OpenIDProviderMetadata(metadata).validate(
        metadata_classes=[rpinitiated.OpenIDProviderMetadata]
    )
    registered = requests.post(
        metadata["registration_endpoint"],
        json={
            "client_name": "authlib test RP",
            "redirect_uris": [redirect_uri],
            "post_logout_redirect_uris": [post_logout_uri],
            "token_endpoint_auth_method": "none",
        },
        timeout=10,
    )
    registered.raise_for_status()
    client_id = registered.json()["client_id"]

    session = OAuth2Session(
        client_id,
        redirect_uri=redirect_uri,
        scope="openid email profile",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = generate_token(64)
    nonce = generate_token(24)
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    print(json.dumps({"authorize": url}), flush=True)
    callback = sys.stdin.readline().strip()
    token = session.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback,
        code_verifier=verifier,
        state=state,
    )

    keys = JsonWebKey.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
        },
        claims_params={
            "nonce": nonce,
            "client_id": client_id,
            "access_token": token["access_token"],
        },
    )
    claims.validate(now=int(time.time()), leeway=60)

    userinfo = UserInfo(session.get(metadata["userinfo_endpoint"]).json())
    if userinfo["sub"] != claims["sub"]:
        raise SystemExit("userinfo names another person than the ID token")
    end_session = metadata["end_session_endpoint"] + "?" + urlencode(
        {
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": post_logout_uri,
            "state": "signed-out-by-authlib",
        }
    )
    print(
        json.dumps(
            {
                "client_id": client_id,
                "claims": dict(claims),
                "userinfo": dict(userinfo),
                "end_session": end_session,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
