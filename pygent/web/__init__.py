"""``pygent ui``: the VS Code chat page served to a browser by a small local server (``server.py``)."""
