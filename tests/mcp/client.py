"""The Python SDK's MCP client calling tools through the gate; prints one JSON line.

usage: python client.py <mcp-url> [<bearer token or API key>]
Prints {"add": ..., "whoami": ...} on success, or {"status": 401, "www_authenticate": ...}
when the gate refuses.
"""

import asyncio
import json
import sys

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


def refusal(error: BaseException):
    if isinstance(error, httpx.HTTPStatusError):
        return error.response
    for inner in getattr(error, "exceptions", ()):
        found = refusal(inner)
        if found is not None:
            return found
    return None


async def main() -> None:
    url = sys.argv[1]
    headers = {"Authorization": f"Bearer {sys.argv[2]}"} if len(sys.argv) > 2 else {}
    try:
        async with streamablehttp_client(url, headers=headers) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                added = await session.call_tool("add", {"a": 2, "b": 3})
                who = await session.call_tool("whoami", {})
                print(json.dumps({"add": added.content[0].text, "whoami": who.content[0].text}))
    except BaseException as error:  # the SDK raises exception groups from its task group
        response = refusal(error)
        if response is None:
            raise
        print(json.dumps({
            "status": response.status_code,
            "www_authenticate": response.headers.get("www-authenticate"),
        }))


asyncio.run(main())
