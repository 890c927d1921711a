"""``pygent acp``: Pygent as an Agent Client Protocol (ACP v1) agent over stdio.

A thin adapter over :class:`pygent.service.SessionService`: :mod:`pygent.acp.agent`
translates ACP requests to service calls, :mod:`pygent.acp.updates` translates core
events to ``session/update`` notifications, :mod:`pygent.acp.approver` asks the client
with ``session/request_permission``, :mod:`pygent.acp.transport` frames the JSON-RPC
messages and :mod:`pygent.acp.launch` is the command line. Only this package imports
the ``acp`` SDK (``agent-client-protocol`` on PyPI).
"""
