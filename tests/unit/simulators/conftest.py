"""What every simulator's unit tests share: a frozen clock, a plain HTTP session, and simulators stopped after each test."""

import pytest
import requests

from tests.simulators.base import Clock

START = 1_800_000_000.0   # 2027-01-15T08:00:00Z; the test modules' START must agree


@pytest.fixture
def clock():
    return Clock(start=START, frozen=True)


@pytest.fixture
def start_simulator(clock):
    """start_simulator(SimulatorClass, **kwargs): started on the test's clock (unless given one), stopped afterwards."""
    started = []

    def start(cls, **kwargs):
        kwargs.setdefault("clock", clock)
        sim = cls(**kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False   # REQUESTS_CA_BUNDLE or a proxy from the environment must not interfere
    yield session
    session.close()
