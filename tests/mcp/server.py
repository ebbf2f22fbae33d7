"""An MCP server (the Python SDK's FastMCP over Streamable HTTP) for the gate tests.

usage: python server.py <port>     (prints "listening on <port>" once it is about to serve)
"""

import sys

from mcp.server.fastmcp import Context, FastMCP

port = int(sys.argv[1])
mcp = FastMCP("latchkey-gate-test", host="127.0.0.1", port=port, log_level="WARNING")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@mcp.tool()
def whoami(ctx: Context) -> str:
    """The user the gate says this request acts for."""
    request = ctx.request_context.request
    return request.headers.get("x-latchkey-user", "nobody") if request else "nobody"


print(f"listening on {port}", flush=True)
mcp.run(transport="streamable-http")
