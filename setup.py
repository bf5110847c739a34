"""Build the optional C part of koe5: MKL's dispatch shim for AMD processors (see src/koe5/mkl.py).

``optional=True``: without a C compiler koe5 installs and works the same, with MKL on its AVX2 path on
AMD chips. Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("koe5._mkl_cpu", sources=["src/koe5/_mkl_cpu.c"], optional=True)])
