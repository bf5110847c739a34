"""koe5's own fp32 CPU fast path, kept apart from the interface it speeds up (:mod:`koe5.runtime`).

* :mod:`~koe5.cpu.mkl` (+ ``_mkl_cpu.c``): MKL's AVX-512 code path on AMD processors;
* :mod:`~koe5.cpu.onednn`: linear layers run by oneDNN with packed weights;
* :mod:`~koe5.cpu.unpadded`: BERT/XLM-R encoders on the real tokens only, without padding;
* :mod:`~koe5.cpu.attention` (+ ``_attention_cpu.c``): its attention kernel, AVX-512 or AVX2;
* :mod:`~koe5.cpu.features`: CPU flags and the optional C libraries the install built.

Importing this package never imports PyTorch: :mod:`koe5.cpu.mkl` must run before it (see there).
"""
