"""The bench/ scripts as modules (bench/ is not a package)."""

import importlib.util
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[3] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / (name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sb():
    """bench/spdk_bench.py"""
    return _load("spdk_bench")


@pytest.fixture(scope="module")
def vb():
    """bench/vhost_bench.py"""
    return _load("vhost_bench")
