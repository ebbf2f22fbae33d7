"""The Python SDK's MCP client (the 1.x or the 2.x line, whichever this venv has) logging in by itself: on the gate's 401 it reads the RFC 9728
document, the authorization server's metadata, registers (RFC 7591), and runs code + PKCE.
The person is played by the test: this script prints the authorization URL as one JSON line,
{"authorize": url}, and reads the callback's "<code> <state> <iss>" from stdin. Then it calls tools
and prints {"add": ..., "whoami": ...}.

usage: python oauth_client.py <mcp-url> <redirect-uri>
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

try:  # the 2.x line: httpx2 clients, and the callback answers an AuthorizationCodeResult
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp.shared.auth import AuthorizationCodeResult

    def connect(url, auth):
        return streamable_http_client(url, http_client=create_mcp_http_client(auth=auth))

    def code_result(code, state, iss):
        return AuthorizationCodeResult(code=code, state=state, iss=iss)

except ImportError:  # the 1.x line
    from mcp.client.streamable_http import streamablehttp_client

    def connect(url, auth):
        return streamablehttp_client(url, auth=auth)

    def code_result(code, state, iss):
        return code, state


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def show_the_person(url: str) -> None:
    print(json.dumps({"authorize": url}), flush=True)


async def callback():
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    code, state, iss = line.split()
    return code_result(code, state, iss)


async def main() -> None:
    url, redirect_uri = sys.argv[1], sys.argv[2]
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="MCP SDK test client",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryStorage(),
        redirect_handler=show_the_person,
        callback_handler=callback,
    )
    async with connect(url, auth) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            added = await session.call_tool("add", {"a": 2, "b": 3})
            who = await session.call_tool("whoami", {})
            print(json.dumps({"add": added.content[0].text, "whoami": who.content[0].text}), flush=True)


asyncio.run(main())
