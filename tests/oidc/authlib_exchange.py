"""authlib trading a latchkey credential for one scoped to an org (RFC 8693 token exchange), as
its users would: the grant found in the discovery document, then fetch_token with the
token-exchange grant as a public client, for an access token and for an API key. Prints both
token responses as one JSON line.

usage: python authlib_exchange.py <issuer> <client-id> <subject-api-key> <org-slug>
"""

import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY = "urn:latchkey:params:oauth:token-type:api_key"


def main() -> None:
    issuer, client_id, subject, org = sys.argv[1:5]
    metadata = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    if GRANT not in metadata["grant_types_supported"]:
        raise SystemExit(f"the token-exchange grant is not advertised: {metadata['grant_types_supported']}")
    session = OAuth2Session(client_id, token_endpoint_auth_method="none")
    access = session.fetch_token(
        metadata["token_endpoint"],
        grant_type=GRANT,
        subject_token=subject,
        subject_token_type=API_KEY,
        scope=f"org:{org}",
    )
    key = session.fetch_token(
        metadata["token_endpoint"],
        grant_type=GRANT,
        subject_token=access["access_token"],
        subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        requested_token_type=API_KEY,
        audience=org,
    )
    print(json.dumps({"access": dict(access), "api_key": dict(key)}))


if __name__ == "__main__":
    main()
