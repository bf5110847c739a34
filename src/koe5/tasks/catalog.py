"""Korean retrieval tasks as metadata, and how each one loads.

Datasets and revisions are those mteb 2.x pins (``mteb/tasks/retrieval/kor/*.py`` and
``mteb/tasks/retrieval/multilingual/*.py``). Four tasks are bundled and load offline; the others load
from the Hugging Face hub.

>>> task = get_task("BelebeleRetrieval")
>>> task.subset, task.splits
('kor_Hang-kor_Hang', ('test',))
>>> len(task.load().queries)
900
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from koe5.errors import InputError
from koe5.tasks.beir import beir_splits, load_beir
from koe5.tasks.bundled import load_bundled
from koe5.tasks.data import DocJoin, RetrievalData
from koe5.tasks.hub import load_hub


@dataclass(frozen=True)
class Task:
    """A retrieval task: where its data lives, which splits and subsets are evaluated, and its licence.

    ``dataset`` and ``revision`` name the hub dataset MTEB evaluates (or, for a BEIR folder, its path);
    ``splits`` and ``subsets`` are those MTEB reports (scores of several splits are averaged, as for
    MultiLongDocRetrieval); ``source`` says where koe5 reads the data from; ``shape`` is the hub layout
    (see ``transforms.SHAPES``) or ``"folder"``; ``bundled`` is the folder under ``koe5/data/eval`` that
    loads offline; ``doc_join`` is MTEB 1.20.1's rule for document text (see ``data.doc_text``).
    """

    name: str
    dataset: str
    revision: str
    splits: tuple[str, ...]
    licence: str
    source: str
    description: str
    languages: tuple[str, ...] = ("kor-Hang",)
    subsets: tuple[str, ...] = ()
    shape: str = "beir"
    bundled: str | None = None
    doc_join: DocJoin = "strip"

    @property
    def subset(self) -> str | None:
        """The main (Korean-Korean) subset, or ``None`` for a task without subsets."""
        return self.subsets[0] if self.subsets else None

    def load(
        self, split: str | None = None, subset: str | None = None, *, from_hub: bool = False
    ) -> RetrievalData:
        """Load one split and subset: bundled files when the task has them, otherwise the hub.

        ``split`` may be left out when the task has one split; ``from_hub=True`` skips the bundled copy.
        """
        if split is None:
            if len(self.splits) != 1:
                raise InputError(f"{self.name}: evaluated on splits {', '.join(self.splits)}; pass split=")
            split = self.splits[0]
        elif split not in self.splits:
            raise InputError(f"{self.name}: no split {split!r} (splits: {', '.join(self.splits)})")
        subset = subset or self.subset
        if subset != self.subset and subset not in self.subsets:
            known = ", ".join(self.subsets) or "none"
            raise InputError(f"{self.name}: no subset {subset!r} (subsets: {known})")
        if self.shape == "folder":
            return load_beir(self.dataset, split, doc_join=self.doc_join)
        if self.bundled and not from_hub:
            if subset != self.subset:
                raise InputError(
                    f"{self.name}: only subset {self.subset} is bundled; pass from_hub=True for {subset}"
                )
            return load_bundled(self.bundled, doc_join=self.doc_join)
        return load_hub(self.dataset, self.revision, self.shape, split, subset, doc_join=self.doc_join)


def _bundled(folder: str, files: str) -> str:
    return f"bundled: koe5/data/eval/{folder} ({files}); hub with from_hub=True"


_TASKS = [
    Task(
        name="Ko-StrategyQA",
        dataset="taeminlee/Ko-StrategyQA",
        revision="d243889a3eb6654029dbd7e7f9319ae31d58f97c",
        splits=("dev",),
        licence="cc-by-4.0",
        source="hub",
        description="StrategyQA questions and Wikipedia paragraphs, machine-translated to Korean.",
        doc_join="raw",
    ),
    Task(
        name="AutoRAGRetrieval",
        dataset="yjoonjang/markers_bm",
        revision="fd7df84ac089bbec763b1c6bb1b56e985df5cc5c",
        splits=("test",),
        licence="mit",
        source=_bundled("autorag", "taeminlee/AutoRAG-example-korean-embedding-benchmark data/*.parquet"),
        description=(
            "Questions over OCR'd Korean PDF pages in finance, public sector, healthcare, law and commerce."
        ),
        bundled="autorag",
        doc_join="raw",
    ),
    Task(
        name="PublicHealthQA",
        dataset="xhluca/publichealth-qa",
        revision="main",
        splits=("test",),
        licence="cc-by-nc-sa-3.0",
        source=_bundled("publichealthqa", "PlateerLab/synaptic-memory publichealthqa_ko.json"),
        description="Public-health FAQ from CDC and WHO (Korean subset): question to its answer.",
        subsets=("korean",),
        shape="publichealthqa",
        bundled="publichealthqa",
    ),
    Task(
        name="BelebeleRetrieval",
        dataset="mteb/belebele",
        revision="979a211276faa22f671e69d096634193567cfd05",
        splits=("test",),
        licence="cc-by-sa-4.0",
        source=_bundled("belebele", "Belebele kor_Hang.jsonl, FLORES-200 passages"),
        description="Belebele reading-comprehension questions to their FLORES-200 passage.",
        languages=("kor-Hang", "eng-Latn"),
        subsets=("kor_Hang-kor_Hang", "kor_Hang-eng_Latn", "eng_Latn-kor_Hang"),
        shape="belebele",
        bundled="belebele",
    ),
    Task(
        name="MIRACLRetrieval",
        dataset="mteb/MIRACLRetrieval",
        revision="9c09abc13478308c27598f350e31d8f06b9b5481",
        splits=("dev",),
        licence="cc-by-sa-4.0",
        source="hub",
        description="MIRACL Korean: questions over Korean Wikipedia passages, graded qrels.",
        languages=("kor-Kore",),
        subsets=("ko",),
    ),
    Task(
        name="MrTidyRetrieval",
        dataset="mteb/mrtidy",
        revision="fc24a3ce8f09746410daee3d5cd823ff7a0675b7",
        splits=("test",),
        licence="cc-by-sa-3.0",
        source="hub",
        description="Mr. TyDi Korean: TyDi questions over Korean Wikipedia passages.",
        languages=("kor-Kore",),
        subsets=("korean",),
    ),
    Task(
        name="MultiLongDocRetrieval",
        dataset="mteb/MultiLongDocRetrieval",
        revision="837028901907a7d419b4ab906f28e011ce1cc824",
        splits=("dev", "test"),
        licence="mit",
        source="hub",
        description=(
            "MLDR Korean: generated questions to long Wikipedia/mC4 articles; "
            "dev and test scores are averaged."
        ),
        subsets=("ko",),
    ),
    Task(
        name="XPQARetrieval",
        dataset="mteb/XPQARetrieval",
        revision="fc4624be978945a0ceebbc4b85737258fe26330b",
        splits=("test",),
        licence="cdla-sharing-1.0",
        source="hub",
        description="xPQA product questions to answers (Korean, and cross-lingual with English).",
        languages=("kor-Hang", "eng-Latn"),
        subsets=("kor-kor", "eng-kor", "kor-eng"),
    ),
    Task(
        name="SQuADKorV1Retrieval",
        dataset="yjoonjang/squad_kor_v1",
        revision="2b4ee1f3b143a04792da93a3df21933c5fe9eed3",
        splits=("test",),
        licence="cc-by-nd-2.0-kr",
        source=_bundled(
            "korquad_v1",
            "korquad/korquad.github.io KorQuAD_v1.0_dev.json, CC BY-ND 2.0 KR; "
            "the hub copy is listed by MTEB as cc-by-sa-4.0",
        ),
        description=(
            "KorQuAD 1.0 dev questions to their Wikipedia paragraph (title + text); derived from the "
            "original file, with the hub copy's counts and character totals."
        ),
        bundled="korquad_v1",
    ),
    Task(
        name="LawIRKo",
        dataset="on-and-on/lawgov_ir-ko",
        revision="bd5361e486ef4be7052c506adfdf0610d04abbfe",
        splits=("test",),
        licence="mit",
        source="hub",
        description="Questions naming a Korean law and article title, to the article's text.",
    ),
]

KNOWN_TASKS: dict[str, Task] = {task.name: task for task in _TASKS}
"""Every task koe5 knows, by MTEB name: the eight KoE5/KURE tasks, SQuADKorV1Retrieval and LawIRKo."""

BUNDLED: tuple[str, ...] = ("AutoRAGRetrieval", "BelebeleRetrieval", "PublicHealthQA", "SQuADKorV1Retrieval")
"""The offline suite, in evaluation order."""


def get_task(name_or_path: str) -> Task:
    """A known task by name (case does not matter), or a task for a BEIR folder given by path."""
    path = Path(name_or_path)
    if path.is_dir():
        return Task(
            name=path.name,
            dataset=str(path),
            revision="",
            splits=beir_splits(path) or ("test",),
            licence="",
            source=f"BEIR folder {path}",
            description="",
            languages=(),
            shape="folder",
        )
    by_lower = {name.lower(): task for name, task in KNOWN_TASKS.items()}
    if name_or_path.lower() in by_lower:
        return by_lower[name_or_path.lower()]
    raise InputError(f"unknown task {name_or_path!r}: not a folder, and not one of {', '.join(KNOWN_TASKS)}")
