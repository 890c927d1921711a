"""``pygent acp``: Pygent as an Agent Client Protocol (ACP v1) agent over stdio.

A thin adapter over :class:`pygent.service.SessionService`, in this process
(:mod:`pygent.acp.backend`) or in a running session host, which runs the agent for each
ACP connection (:mod:`pygent.acp.hosted`; ``pygent acp`` then only pipes bytes to it):
:mod:`pygent.acp.agent`
translates ACP requests to backend calls, :mod:`pygent.acp.updates` translates core
events to ``session/update`` notifications, :mod:`pygent.acp.approver` asks the client
with ``session/request_permission``, :mod:`pygent.acp.transport` frames the JSON-RPC
messages and :mod:`pygent.acp.launch` is the command line. Only this package imports
the ``acp`` SDK (``agent-client-protocol`` on PyPI).
"""
