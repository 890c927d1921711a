"""MCP (Model Context Protocol) servers as agent tools, run inside the session's sandbox."""

from pygent.mcp.config import (
    McpServerSpec,
    specs_from_acp,
    specs_from_mcp_json,
    specs_from_toml,
)

__all__ = ["McpServerSpec", "specs_from_acp", "specs_from_mcp_json", "specs_from_toml"]
