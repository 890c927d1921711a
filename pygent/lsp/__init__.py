"""The language server front end: ``pygent lsp`` (pygls), a thin adapter over :mod:`pygent.service`."""
