"""Token ids → vectors: the backends that run an encoder, and how koe5 picks one.

* ``torch``: the sentence-transformers model (SDPA attention; fp16 on CUDA, asynchronously; on CPU
  fp32 through koe5's fast path, :mod:`koe5.cpu`), :mod:`koe5.runtime.torch_runner`.
* ``onnx``: the same graph exported to ONNX, run by ONNX Runtime (``koe5 export --onnx``),
  :mod:`koe5.runtime.onnx_runner`.
* ``onnx-int8``: that graph with dynamically quantised int8 weights (``koe5 export --onnx --int8``).
* ``auto``: per kind of input, the fastest backend that passed the quality gate when it was exported
  (:mod:`koe5.runtime.export`), torch in bf16 (``torch-bf16``) among the candidates on CPUs with bf16
  hardware; torch where nothing was measured.

Modules: :mod:`~koe5.runtime.base` (the :class:`~koe5.runtime.base.Runner` protocol, precisions),
:mod:`~koe5.runtime.select` (the backend table: which runner serves each kind),
:mod:`~koe5.runtime.pooling`, :mod:`~koe5.runtime.hardware` (threads, bf16 hardware) and
:mod:`~koe5.runtime.export` (ONNX export and the quality gate).

This package's ``__init__`` imports nothing, so that :mod:`koe5.cpu` can read
:mod:`koe5.runtime.pooling` without loading the runners that use :mod:`koe5.cpu`.
"""
