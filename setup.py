"""Build the optional C parts of koe5: MKL's dispatch shim for AMD processors (src/koe5/mkl.py) and the
AVX-512 attention kernel of the unpadded CPU encoder (src/koe5/attention.py).

``optional=True``: without a C compiler (with OpenMP, for the kernel) koe5 installs and works the same,
with MKL on its AVX2 path on AMD chips and PyTorch's attention kernel. Everything else about the package
is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("koe5._mkl_cpu", sources=["src/koe5/_mkl_cpu.c"], optional=True),
        Extension(
            "koe5._attention_cpu",
            sources=["src/koe5/_attention_cpu.c"],
            # AVX-512 is enabled inside the file for the kernel only; koe5 calls it where the CPU has it
            extra_compile_args=["-O3", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        ),
    ]
)
