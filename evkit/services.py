"""The engine's shared services: a registry keyed by type, and the lifecycle each service gets.

A service is something listeners of one engine share: the inbox, the HTTP server, the
Redis readers, named reads of the store. Listeners find them through
``get_event_context().services``; the engine tells every service when a run ends and
closes them when it closes. This module knows no concrete service and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from evkit.errors import RunStateError

S = TypeVar("S", bound="Service")


class Service:
    """Base class of services: the lifecycle hooks the registry calls, each optional.

    A service starts when it is made (the registry's :meth:`ServiceRegistry.get_or_add`
    makes it on first use); then :meth:`release_run` is called for every run that ends,
    and one of :meth:`aclose` (the engine closing) or :meth:`close_nowait` (the runtime
    closing on the engine's own loop, where nothing can be awaited) once at the end.
    """

    def release_run(self, workflow_id: str) -> None:
        """Forget what the service holds for a run that ended (its waits are gone)."""

    async def aclose(self) -> None:
        """Stop and release what the service holds; awaited when the engine closes."""
        self.close_nowait()

    def close_nowait(self) -> None:
        """Stop at once without awaiting (tasks it starts to finish up are its own)."""


class ServiceRegistry:
    """The services of one engine, at most one per type."""

    def __init__(self, *services: Service) -> None:
        self._services: dict[type[Service], Service] = {}
        for service in services:
            self.add(service)

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self._services.values()))

    def get(self, kind: type[S]) -> S | None:
        """The service of type ``kind``, if there is one."""
        service = self._services.get(kind)
        return service if isinstance(service, kind) else None

    def require(self, kind: type[S]) -> S:
        """The service of type ``kind``.

        Raises:
            RunStateError: The engine has none (a listener used outside an engine's run).
        """
        service = self.get(kind)
        if service is None:
            raise RunStateError(
                f"No {kind.__qualname__} service is running here: it is made by evkit's engine "
                "for the listeners of its runs. Call this from a listener of a running workflow."
            )
        return service

    def get_or_add(self, kind: type[S], make: Callable[[], S]) -> S:
        """The service of type ``kind``, made with ``make()`` and added on first use."""
        service = self.get(kind)
        if service is None:
            service = self.add(make())
        return service

    def add(self, service: S) -> S:
        """Add ``service`` under its type, replacing one of the same type; returns it."""
        self._services[type(service)] = service
        return service

    def remove(self, service: Service) -> None:
        """Remove ``service`` if it is the one registered under its type."""
        if self._services.get(type(service)) is service:
            del self._services[type(service)]

    def release_run(self, workflow_id: str) -> None:
        """Tell every service that run ``workflow_id`` ended."""
        for service in self:
            service.release_run(workflow_id)

    async def aclose(self) -> None:
        """Close every service (each awaited in turn) and forget them."""
        for service in self:
            await service.aclose()
        self._services.clear()

    def close_nowait(self) -> None:
        """Close every service without awaiting and forget them."""
        for service in self:
            service.close_nowait()
        self._services.clear()
