"""What a reranker folder must be, read from its small JSON files before any weights are loaded.

sentence-transformers' ``CrossEncoder`` loads almost anything: given an embedding (bi-encoder) folder
it adds a freshly initialised classification head and scores pairs with random weights, with only a
log line to say so. koe5 checks first and refuses, naming the folder and why. Accepted: a plain
Hugging Face ``*ForSequenceClassification`` folder, and a sentence-transformers CrossEncoder folder
(``config_sentence_transformers.json`` with ``"model_type": "CrossEncoder"``, as ``CrossEncoder.save``
writes since sentence-transformers 5). Only one-label heads are accepted: see :func:`inspect_folder`.

Example::

    from pathlib import Path
    from koe5.rerank.folders import inspect_folder

    facts = inspect_folder(Path("my-reranker"), "my-reranker")
    facts.num_labels, facts.positions, facts.activation      # (1, 512, 'sigmoid')
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from koe5.errors import ConfigError, ModelError

log = logging.getLogger("koe5")

#: The files :func:`inspect_folder` reads; for a hub id only these are fetched before the weights.
CONFIG_FILES = ("config.json", "modules.json", "config_sentence_transformers.json", "tokenizer_config.json")
#: Model types whose position ids start after the padding index (RoBERTa's scheme): they read
#: ``max_position_embeddings - pad_token_id - 1`` tokens, e.g. 514 - 2 = 512 for XLM-R.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "mpnet")
#: The longest default for a reranker koe5 does not know: a cross-encoder reads every candidate
#: with the query, so an 8k-token default would make a CPU rerank of 100 candidates take minutes.
UNKNOWN_MAX_LENGTH = 512
_HINT = (
    " A reranker is a cross-encoder: one (query, passage) pair in, one relevance logit out. Embedding "
    "models belong to koe5.load / `koe5 encode`; for reranking name a cross-encoder such as "
    "dragonkue/bge-reranker-v2-m3-ko."
)


@dataclass(frozen=True)
class FolderFacts:
    """What a reranker's files say about it."""

    num_labels: int
    model_type: str
    #: the most tokens its position embeddings allow, ``None`` if the config does not say
    positions: int | None
    #: ``model_max_length`` of tokenizer_config.json, ``None`` if absent or a "no limit" sentinel
    tokenizer_max: int | None
    #: the activation sentence-transformers saved with it (``sigmoid``/``identity``), if any
    activation: str | None


def config_folder(location: str, local: bool) -> Path:
    """The folder holding the reranker's :data:`CONFIG_FILES`: the folder itself, or for a hub id a
    snapshot of just those files (from the cache when offline), so a wrong model is refused before
    its weights are downloaded."""
    if local:
        return Path(location).expanduser()
    from koe5.hub import unavailable

    reason = unavailable(location)
    if reason is not None:
        raise ModelError(f"cannot load reranker {location}: {reason}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(location, allow_patterns=list(CONFIG_FILES)))
    except Exception as exc:  # huggingface_hub raises many types; name the reranker either way
        raise ModelError(f"cannot load reranker {location}: {type(exc).__name__}: {exc}") from exc


def inspect_folder(folder: Path, name: str) -> FolderFacts:
    """Read and check a reranker's config files; ``name`` is how errors call it (folder or hub id).

    Raises :class:`~koe5.errors.ModelError` for an embedding (bi-encoder) folder and for a head with
    more than one label. A 2-label classifier is refused rather than read through its "positive"
    logit: its relevance is ``softmax`` over both logits, which one label alone does not give, and
    which label means "relevant" is a guess the folder does not answer.
    """
    config = _read_json(folder / "config.json", name, required=True)
    st_config = _read_json(folder / "config_sentence_transformers.json", name)
    modules = _read_json(folder / "modules.json", name)
    _refuse_embedding_model(name, config, st_config, modules)
    num_labels = _num_labels(config)
    if num_labels != 1:
        raise ModelError(
            f"{name}: its classification head has {num_labels} labels; koe5 reranks with one-label heads "
            "only (one relevance logit per pair), as bge-reranker and ko-reranker are."
        )
    tokenizer = _read_json(folder / "tokenizer_config.json", name)
    tokenizer_max = tokenizer.get("model_max_length")
    return FolderFacts(
        num_labels=num_labels,
        model_type=str(config.get("model_type", "")),
        positions=_positions(config),
        tokenizer_max=tokenizer_max if isinstance(tokenizer_max, int) and tokenizer_max < 1_000_000 else None,
        activation=_saved_activation(name, config, st_config),
    )


def choose_max_length(requested: int | None, registered: int | None, facts: FolderFacts, name: str) -> int:
    """The pair length to use: ``requested`` if the model can read it, else the registry's, else
    the tokenizer's limit capped at :data:`UNKNOWN_MAX_LENGTH`; never more than the positions allow."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 8:
            raise ConfigError(f"max_length must be an integer of at least 8 tokens, got {requested!r}")
        if facts.positions is not None and requested > facts.positions:
            raise ConfigError(
                f"max_length {requested} is more than {name} can read ({facts.positions} positions)"
            )
        return requested
    base = registered or min(UNKNOWN_MAX_LENGTH, facts.tokenizer_max or UNKNOWN_MAX_LENGTH)
    return min(base, facts.positions) if facts.positions else base


def _read_json(path: Path, name: str, *, required: bool = False) -> dict:
    if not path.is_file():
        if required:
            raise ModelError(f"{name}: {path.name} is missing, so it is no model folder koe5 can read")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(value, (dict, list)):
        raise ModelError(f"{path}: expected a JSON object or list, got {type(value).__name__}")
    return value if isinstance(value, dict) else {"modules": value}


def _refuse_embedding_model(name: str, config: dict, st_config: dict, modules: dict) -> None:
    model_type = st_config.get("model_type")
    if model_type is not None and model_type != "CrossEncoder":
        raise ModelError(
            f"{name} is a sentence-transformers {model_type} folder (an embedding model), not a reranker."
            + _HINT
        )
    pooling = [m.get("type", "") for m in modules.get("modules", []) if "Pooling" in str(m.get("type", ""))]
    if pooling:
        raise ModelError(
            f"{name} is an embedding model (its modules.json pools token vectors into one vector: "
            f"{pooling[0]}), not a reranker." + _HINT
        )
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        shown = ", ".join(map(str, architectures)) or "none"
        raise ModelError(
            f"{name} is not a reranker: config.json names the architectures {shown}, none of them "
            "*ForSequenceClassification." + _HINT
        )


def _num_labels(config: dict) -> int:
    # transformers writes id2label (num_labels is derived from it); without either its default is 2
    labels = config.get("id2label")
    if isinstance(labels, dict) and labels:
        return len(labels)
    return int(config.get("num_labels", 2))


def _positions(config: dict) -> int | None:
    total = config.get("max_position_embeddings")
    if not isinstance(total, int):
        return None
    if config.get("model_type") in OFFSET_POSITIONS:
        pad = config.get("pad_token_id")
        return total - (1 if pad is None else int(pad)) - 1
    return total


def _saved_activation(name: str, config: dict, st_config: dict) -> str | None:
    """Where each sentence-transformers version saved a CrossEncoder's activation: 5+ in
    config_sentence_transformers.json, 4 in config.json's ``sentence_transformers``, older ones in
    ``sbert_ce_default_activation_function``."""
    path = (
        st_config.get("activation_fn")
        or (config.get("sentence_transformers") or {}).get("activation_fn")
        or config.get("sbert_ce_default_activation_function")
    )
    if not path:
        return None
    leaf = str(path).rsplit(".", 1)[-1]
    found = {"Sigmoid": "sigmoid", "Identity": "identity"}.get(leaf)
    if found is None:
        log.warning("koe5: %s saves the activation %s; koe5 reports sigmoid scores instead", name, path)
    return found
