"""The types of the app's shared FastAPI dependencies, for the modules that add routes.

The dependencies are coroutines (a plain function would cost every request a hop through
the thread pool): ``kg`` gives the open knowledge graph (or 503 while the server starts),
``writer`` checks the bearer token of write routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kg.graph import KnowledgeGraph

GraphDependency = Callable[[], Awaitable[KnowledgeGraph]]
WriterDependency = Callable[..., Awaitable[None]]
