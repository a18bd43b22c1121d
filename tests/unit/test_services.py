"""The service registry: one service per type, and the lifecycle calls each service gets."""

from __future__ import annotations

import pytest

from evkit.errors import RunStateError
from evkit.services import Service, ServiceRegistry


class Recorder(Service):
    def __init__(self, log: list[str], name: str = "recorder") -> None:
        self.log = log
        self.name = name

    def release_run(self, workflow_id: str) -> None:
        self.log.append(f"{self.name} release {workflow_id}")

    def close_nowait(self) -> None:
        self.log.append(f"{self.name} close_nowait")


class Other(Service):
    pass


def test_a_service_is_found_by_its_type_and_only_by_it() -> None:
    recorder = Recorder([])
    services = ServiceRegistry(recorder)
    assert services.get(Recorder) is recorder
    assert services.get(Other) is None
    assert services.require(Recorder) is recorder


def test_require_names_the_missing_service() -> None:
    with pytest.raises(RunStateError, match=r"^No Other service is running here"):
        ServiceRegistry().require(Other)


def test_get_or_add_makes_a_service_once() -> None:
    services = ServiceRegistry()
    made: list[Other] = []

    def make() -> Other:
        made.append(Other())
        return made[-1]

    first = services.get_or_add(Other, make)
    assert services.get_or_add(Other, make) is first
    assert made == [first]


def test_every_service_hears_of_an_ended_run() -> None:
    log: list[str] = []
    services = ServiceRegistry(Recorder(log), Other())
    services.release_run("w1")
    assert log == ["recorder release w1"]


async def test_closing_closes_each_service_once_and_forgets_them() -> None:
    log: list[str] = []
    services = ServiceRegistry(Recorder(log))
    await services.aclose()  # the base aclose stops the service with close_nowait
    assert log == ["recorder close_nowait"]
    assert services.get(Recorder) is None
    services.close_nowait()
    assert log == ["recorder close_nowait"]


def test_remove_drops_only_the_registered_instance() -> None:
    log: list[str] = []
    old, new = Recorder(log, "old"), Recorder(log, "new")
    services = ServiceRegistry(old)
    services.add(new)  # replaces the one of the same type
    services.remove(old)  # no longer registered: nothing happens
    assert services.get(Recorder) is new
    services.remove(new)
    assert services.get(Recorder) is None
