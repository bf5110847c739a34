"""Build the optional C parts of koe5: MKL's dispatch shim for AMD processors (src/koe5/cpu/mkl.py) and the
attention kernel (AVX-512 or AVX2) of the unpadded CPU encoder (src/koe5/cpu/attention.py).

``optional=True``: without a C compiler (with OpenMP, for the kernel) koe5 installs and works the same,
with MKL on its AVX2 path on AMD chips and PyTorch's attention kernel. Everything else about the package
is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("koe5.cpu._mkl_cpu", sources=["src/koe5/cpu/_mkl_cpu.c"], optional=True),
        Extension(
            "koe5.cpu._attention_cpu",
            sources=["src/koe5/cpu/_attention_cpu.c"],
            # AVX-512 / AVX2 are enabled inside the file for their own functions; koe5 calls the one
            # the CPU has
            extra_compile_args=["-O3", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        ),
    ]
)
