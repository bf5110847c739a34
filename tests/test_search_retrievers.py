"""Retrievers for the benchmark runner: BM25, hybrid, and a real index per task."""

from __future__ import annotations

from koe5.embcache import EmbeddingCache
from koe5.evaluation import DenseRetriever, FunctionRetriever, evaluate_split, evaluate_tasks
from koe5.evaluation.retrievers import BM25Retriever, HybridRetriever, IndexRetriever
from koe5.tasks import get_task
from koe5.tasks.data import assemble


def test_bm25_retriever_on_a_bundled_task():
    results = evaluate_tasks(BM25Retriever(), ["PublicHealthQA"])
    # measured 0.66501 (README, "Search"); a guard against a broken analysis, not a target
    assert results["PublicHealthQA"]["scores"]["test"][0]["ndcg_at_10"] > 0.6


def test_hybrid_retriever_fuses_two_retrievers():
    def oracle(data, k):
        return {q: {d: float(g) for d, g in data.qrels[q].items()} for q in data.queries}

    def nothing(data, k):
        return {}

    hybrid = HybridRetriever(FunctionRetriever("oracle", oracle), FunctionRetriever("none", nothing))
    scores = evaluate_tasks(hybrid, ["PublicHealthQA"])["PublicHealthQA"]["scores"]["test"][0]
    assert scores["ndcg_at_10"] == 1.0
    assert hybrid.name == f"hybrid-{hybrid.fusion.label}"


def test_hybrid_retriever_weighs_each_query_by_bm25_coverage():
    from koe5.search.hybrid import Fusion, coverage

    data = get_task("PublicHealthQA").load()
    bm25 = BM25Retriever()

    def dense_reversed(data, k):  # a dense side that disagrees with BM25 everywhere
        return {q: {d: -s for d, s in hits.items()} for q, hits in bm25.rank(data, k).items()}

    fusion = Fusion("minmax", adaptive=(0.2, 0.8))
    run = HybridRetriever(FunctionRetriever("rev", dense_reversed), bm25, fusion).rank(data, 10)
    found, idf = bm25.rank(data, 100), bm25.idf_totals(data)
    for q in list(data.queries)[:10]:
        cover = coverage(max(found[q].values()), idf[q]) if found[q] else None
        weight = fusion.dense_weight(cover)
        expected = Fusion("minmax", weight=weight).fuse(dense_reversed(data, 100)[q], found[q])
        assert list(run[q]) == list(expected)[:10]
        assert 0.2 <= weight <= 0.8


def test_an_index_ranks_like_the_bench_retrievers(tiny, tmp_path):
    full = get_task("PublicHealthQA").load()
    # the 3 longest documents (the index chunks them, the bench retrievers do not) and 12 short ones
    by_length = sorted(full.corpus, key=lambda d: len(full.doc_text(d)))
    keep = set(by_length[-3:] + by_length[:12])
    qrels = [(q, d, g) for q, docs in full.qrels.items() for d, g in docs.items() if d in keep]
    data = assemble({d: full.corpus[d] for d in keep}, full.queries, qrels, origin="PublicHealthQA subset")
    cache = EmbeddingCache(tmp_path / "emb.sqlite")  # the index reuses the vectors of unchunked documents
    dense = evaluate_split(DenseRetriever(tiny, cache=cache), data, ks=(10,))["ndcg_at_10"]
    dense_index = evaluate_split(IndexRetriever(tiny, "dense", cache=cache), data, ks=(10,))["ndcg_at_10"]
    assert abs(dense_index - dense) < 0.05  # chunked long documents score by their best chunk
    bm25 = evaluate_split(BM25Retriever(), data, ks=(10,))["ndcg_at_10"]
    bm25_index = evaluate_split(IndexRetriever(tiny, "bm25"), data, ks=(10,))["ndcg_at_10"]
    assert abs(bm25_index - bm25) < 0.05
