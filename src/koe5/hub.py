"""One question to the Hugging Face hub before a library asks it many times.

transformers and datasets retry every file they cannot fetch, with a log line each time: a model or
dataset that does not exist, or a hub that cannot be reached, used to cost 18-36 retry lines and up
to a minute before the error. :func:`unavailable` answers from the local cache, the offline switch
(``HF_HUB_OFFLINE``, read by huggingface_hub itself) or one lookup, and callers turn its reason into
one clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Unavailable:
    """Why a repository cannot be loaded: ``offline`` (offline mode, not cached), ``unreachable`` (the
    look-up failed) or ``missing`` (the hub has no such repository or revision)."""

    reason: Literal["offline", "unreachable", "missing"]
    detail: str

    def __str__(self) -> str:
        return self.detail


def _cached(repo_id: str, repo_type: str) -> bool:
    """Whether the local caches hold something of the repository (it may then load offline)."""
    from huggingface_hub import constants

    folder = f"{repo_type}s--{repo_id.replace('/', '--')}"
    if (Path(constants.HF_HUB_CACHE) / folder).is_dir():
        return True
    if repo_type == "dataset":
        import datasets

        return any(Path(datasets.config.HF_DATASETS_CACHE).glob(f"{repo_id.replace('/', '___')}*"))
    return False


def unavailable(repo_id: str, repo_type: str = "model", revision: str | None = None) -> Unavailable | None:
    """``None`` if ``repo_id`` may be loaded (cached, or the hub has it); otherwise why it cannot be."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if _cached(repo_id, repo_type):
        return None
    if constants.HF_HUB_OFFLINE:
        return Unavailable(
            "offline", "not in the local Hugging Face cache, and offline mode is on (HF_HUB_OFFLINE)"
        )
    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=10)
    except RevisionNotFoundError:
        return Unavailable(
            "missing", f"the Hugging Face hub has no revision {revision!r} of this {repo_type}"
        )
    except RepositoryNotFoundError:
        detail = (
            f"no such {repo_type} on the Hugging Face hub (or it is private: log in with `hf auth login`)"
        )
        return Unavailable("missing", detail)
    except Exception as exc:  # connection refused, no DNS, timeouts: the libraries raise many types
        return Unavailable(
            "unreachable", f"the Hugging Face hub is unreachable ({type(exc).__name__}: {exc})"
        )
    return None
