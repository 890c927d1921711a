"""The terminal REPL behind ``pygent``: input, rendering, approvals, slash commands."""
