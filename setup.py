# The only job of this file: attach the cffi extension. Everything else is in setup.cfg.
from setuptools import setup

setup(cffi_modules=["spdk_backend/_build/build_native.py:ffibuilder"])
