"""Drives `toolcell serve` with the official Python MCP client SDK, for the tests.

Usage: client.py SCENARIO_JSON
  Transport from the environment:
    MCP_TRANSPORT=stdio  TOOLCELL=<binary>  TOOLCELL_ARGS=<JSON list of args>
    MCP_TRANSPORT=http   MCP_URL=<http://host:port/mcp>  [MCP_TOKEN=<bearer>]  [MCP_ORIGIN=<origin>]
    MCP_OAUTH=<JSON {"issuer", "client_id", "client_secret", "scope"}>  get a token as the SDK does:
      401 -> protected resource metadata (RFC 9728) -> authorization server metadata -> client
      credentials with the resource indicator; what it discovered is printed under "oauth"
    MCP_ELICIT=accept|deny|decline  declare elicitation and answer every request so (unset: no elicitation)
  Scenarios (JSON objects with "do"):
    {"do": "list"}
    {"do": "call", "tool": ..., "arguments": {...}, "meta": {...}?}
    {"do": "progress", "tool": ..., "arguments": {...}}
    {"do": "cancel", "tool": ..., "arguments": {...}, "after": seconds}
    {"do": "concurrent", "tool": ..., "arguments": {...}, "calls": n}
    {"do": "watch", "tool": ..., "rename_from": path, "rename_to": path}
Prints one JSON object with what happened; exits 0 unless the client itself broke.
"""

import json
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def result_of(result):
    return {
        "isError": bool(result.is_error),
        "text": [block.text for block in result.content if getattr(block, "type", "") == "text"],
        "structured": result.structured_content,
    }


async def call(session, scenario, **extra):
    try:
        result = await session.call_tool(
            scenario["tool"], scenario.get("arguments", {}), meta=scenario.get("meta"), **extra
        )
        return result_of(result)
    except MCPError as error:
        return {"error": {"code": error.error.code, "message": error.error.message, "data": error.error.data}}


async def run(session, scenario):
    await session.initialize()
    kind = scenario["do"]
    if kind == "list":
        tools = (await session.list_tools()).tools
        return {
            "tools": {
                tool.name: {
                    "description": tool.description,
                    "inputSchema": tool.input_schema,
                    "outputSchema": tool.output_schema,
                }
                for tool in tools
            }
        }
    if kind == "call":
        return await call(session, scenario)
    if kind == "progress":
        seen = []

        async def progress(value, total, message):
            seen.append({"progress": value, "message": message})

        outcome = await call(session, scenario, progress_callback=progress)
        return {"result": outcome, "progress": seen}
    if kind == "cancel":
        with anyio.move_on_after(scenario.get("after", 1.0)):
            await call(session, scenario)
            return {"cancelled": False}
        # Abandoning the request sends notifications/cancelled; give it time to land.
        await anyio.sleep(1.0)
        return {"cancelled": True}
    if kind == "concurrent":
        outcomes = []

        async def one():
            outcomes.append(await call(session, scenario))

        async with anyio.create_task_group() as group:
            for _ in range(scenario["calls"]):
                group.start_soon(one)
        return {"outcomes": outcomes}
    if kind == "watch":
        changed = anyio.Event()

        async def on_message(message):
            if getattr(getattr(message, "root", message), "method", "") == "notifications/tools/list_changed":
                changed.set()

        session._message_handler = on_message
        before = sorted(tool.name for tool in (await session.list_tools()).tools)
        os.rename(scenario["rename_from"], scenario["rename_to"])
        with anyio.move_on_after(10):
            await changed.wait()
        after = sorted(tool.name for tool in (await session.list_tools()).tools)
        return {"before": before, "after": after, "notified": changed.is_set()}
    raise SystemExit(f"unknown scenario {kind!r}")


ELICITED = []


async def elicitation(context, params):
    """Answers an elicitation as MCP_ELICIT says, remembering what was asked."""
    from mcp import types

    ELICITED.append(params.message)
    answer = os.environ["MCP_ELICIT"]
    if answer == "decline":
        return types.ElicitResult(action="decline")
    return types.ElicitResult(action="accept", content={"approve": answer == "accept", "reason": "from the test"})


def describe_failure(error):
    """An exception as text, with the ones an exception group holds."""
    inner = getattr(error, "exceptions", None)
    if inner:
        return "; ".join(describe_failure(e) for e in inner)
    return f"{type(error).__name__}: {error}"


class MemoryTokens:
    """Where the SDK keeps the token it got (this process only)."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


def oauth_provider():
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

    settings = json.loads(os.environ["MCP_OAUTH"])
    return ClientCredentialsOAuthProvider(
        server_url=os.environ["MCP_URL"],
        storage=MemoryTokens(),
        client_id=settings["client_id"],
        client_secret=settings["client_secret"],
        scope=settings.get("scope"),
        issuer=settings["issuer"],
    )


def session_options():
    return {"elicitation_callback": elicitation} if os.environ.get("MCP_ELICIT") else {}


async def main():
    scenario = json.loads(sys.argv[1])
    if os.environ["MCP_TRANSPORT"] == "stdio":
        params = StdioServerParameters(
            command=os.environ["TOOLCELL"], args=json.loads(os.environ["TOOLCELL_ARGS"]), env=dict(os.environ)
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, message_handler=None, **session_options()) as session:
                outcome = await run(session, scenario)
    else:
        headers = {}
        if os.environ.get("MCP_TOKEN"):
            headers["Authorization"] = "Bearer " + os.environ["MCP_TOKEN"]
        if os.environ.get("MCP_ORIGIN"):
            headers["Origin"] = os.environ["MCP_ORIGIN"]
        auth = oauth_provider() if os.environ.get("MCP_OAUTH") else None
        try:
            async with create_mcp_http_client(headers=headers, auth=auth) as http:
                async with streamable_http_client(os.environ["MCP_URL"], http_client=http) as streams:
                    read, write = streams[0], streams[1]
                    async with ClientSession(read, write, **session_options()) as session:
                        outcome = await run(session, scenario)
        except BaseException as error:  # the refusal tests expect the connection to fail
            outcome = {"failed": describe_failure(error)}
    if ELICITED:
        outcome["elicited"] = ELICITED
    if os.environ.get("MCP_OAUTH") and auth is not None:
        context = auth.context
        resource = context.protected_resource_metadata
        outcome["oauth"] = {
            "resource": str(resource.resource) if resource else None,
            "authorization_servers": [str(s) for s in resource.authorization_servers] if resource else None,
            "scopes_supported": resource.scopes_supported if resource else None,
            "token_endpoint": str(context.oauth_metadata.token_endpoint) if context.oauth_metadata else None,
            "got_token": context.current_tokens is not None,
        }
    print(json.dumps(outcome))


anyio.run(main)
