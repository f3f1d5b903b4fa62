"""The routes of ``seem serve``, one module per resource, each with ``register(app, state)``.

Registered in this order by :func:`seem.server.app.register_routes`: :mod:`.images`, :mod:`.predict`
(one-shot), :mod:`.panoptic`, :mod:`.cvat`, :mod:`.sessions`, :mod:`.info` (models, health) and
:mod:`.page` (the web page and its static files). Shared response declarations are in :mod:`.common`.
"""
