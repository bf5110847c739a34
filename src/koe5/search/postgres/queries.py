"""The SQL of a search: dense candidates by pgvector, BM25 scored by the database, metadata filters.

Each function returns chunk rows best first as ``(row, doc_id, score)``; folding rows into documents and
fusing the two sides is :mod:`koe5.search.ranking`'s, shared with the folder index, so both stores rank
the same candidates the same way.
"""

from __future__ import annotations

import json
from typing import Any

from koe5.search.ranking import checked_filters

#: pgvector's largest hnsw.ef_search; a search that wants more rows than this scans exactly.
MAX_EF_SEARCH = 1000

Rows = list[tuple[int, str, float]]


def filter_sql(filters: dict[str, Any] | None) -> tuple[str, list]:
    """``filters`` as a SQL condition on ``chunks`` and its parameters (``"TRUE"`` for none).

    The same rule as the folder index (:func:`koe5.search.ranking.filter_mask`): every key must
    match; a list/tuple/set means any of its values; ``doc_id`` filters on ids; values compare as JSON
    values do (``1`` and ``1.0`` are equal, ``"1"`` and ``1`` are not).
    """
    if not filters:
        return "TRUE", []
    parts, params = [], []
    for key, wanted in checked_filters(filters):
        if key == "doc_id":
            parts.append("c.doc_id = ANY(%s)")
            params.append([w for w in wanted if isinstance(w, str)])
        else:
            parts.append("(c.metadata -> %s) = ANY(%s::jsonb[])")
            params += [key, [json.dumps(w, ensure_ascii=False) for w in wanted]]
    return " AND ".join(parts), params


def dense_rows(conn, schema: str, vector, want: int, where: tuple[str, list], hnsw_ef: int | None) -> Rows:
    """The ``want`` chunks nearest to ``vector`` (inner product). ``hnsw_ef``: search the HNSW graph
    with this ef_search; ``None``: exactly (small indexes, filtered searches, very deep ones)."""
    condition, params = where
    if hnsw_ef is not None and condition == "TRUE" and want <= MAX_EF_SEARCH:
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(max(hnsw_ef, want))])
        order = "c.embedding <#> %s"  # the graph's order: nothing after it, or the planner scans
    else:
        conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
        order = "c.embedding <#> %s, c.row"  # ties: the lower row first, as the folder index
    found = conn.execute(
        f"SELECT c.row, c.doc_id, -(c.embedding <#> %s) FROM {schema}.chunks c WHERE {condition} "
        f"ORDER BY {order} LIMIT %s",
        [vector, *params, vector, want],
    ).fetchall()
    conn.execute("SELECT set_config('enable_indexscan', 'on', true)")
    return found


def bm25_rows(conn, schema: str, terms: list[str], want: int, where: tuple[str, list], stats: dict) -> Rows:
    """The ``want`` best chunks by Lucene BM25 over the index's postings (what bm25s computes: idf
    ``ln(1 + (N - df + 0.5) / (df + 0.5))`` times ``tf / (tf + k1 (1 - b + b len / avglen))``, a
    repeated query term counted again); only chunks sharing a term with the query."""
    if not terms or not stats["chunks"]:
        return []
    condition, params = where
    n = float(stats["chunks"])
    avg = max(stats["terms"] / n, 1e-9)
    k1, b = stats["k1"], stats["b"]
    scored = (
        "WITH q AS (SELECT term, count(*)::float8 AS qtf FROM unnest(%s::text[]) AS term GROUP BY term), "
        f"df AS (SELECT p.term, count(*)::float8 AS df FROM {schema}.postings p JOIN q USING (term) "
        "GROUP BY p.term), "
        # rounded to float4 as bm25s's scores are: two chunks of equal score then tie exactly and
        # fall back to row order, where the double sums could differ in their last bit
        "s AS (SELECT p.row, sum(q.qtf * ln(1 + (%s - df.df + 0.5) / (df.df + 0.5)) * p.tf "
        "/ (p.tf + %s * (1 - %s + %s * p.terms / %s)))::float4 AS score "
        f"FROM {schema}.postings p JOIN q USING (term) JOIN df USING (term) GROUP BY p.row) "
    )
    head = [terms, n, k1, b, b, avg]
    if condition == "TRUE":  # rank first, then look up the few documents
        sql = (
            scored + "SELECT t.row, c.doc_id, t.score FROM (SELECT row, score FROM s ORDER BY score DESC, "
            f"row LIMIT %s) t JOIN {schema}.chunks c USING (row) ORDER BY t.score DESC, t.row"
        )
        return conn.execute(sql, [*head, want]).fetchall()
    sql = (
        scored
        + f"SELECT s.row, c.doc_id, s.score FROM s JOIN {schema}.chunks c USING (row) WHERE {condition} "
        "ORDER BY s.score DESC, s.row LIMIT %s"
    )
    return conn.execute(sql, [*head, *params, want]).fetchall()


def idf_total(conn, schema: str, terms: list[str], chunks: int) -> float:
    """The IDF sum of the query's distinct terms that some chunk has, as
    :meth:`KoreanBM25.idf_total <koe5.search.bm25.KoreanBM25.idf_total>` computes it."""
    if not terms or not chunks:
        return 0.0
    found = conn.execute(
        "SELECT coalesce(sum(ln(1 + (%s - df + 0.5) / (df + 0.5))), 0) FROM (SELECT count(*)::float8 "
        f"AS df FROM {schema}.postings WHERE term = ANY(%s::text[]) GROUP BY term) d",
        [float(chunks), sorted(set(terms))],
    ).fetchone()
    return float(found[0])


def chunk_records(conn, schema: str, rows: list[int]) -> dict[int, dict[str, Any]]:
    """The stored records of ``rows``, shaped as the folder index's (:meth:`Rows.chunk`)."""
    found = conn.execute(
        "SELECT row, doc_id, chunk, start_char, end_char, text, title, metadata_json "
        f"FROM {schema}.chunks WHERE row = ANY(%s)",
        [rows],
    ).fetchall()
    return {
        r[0]: {
            "doc_id": r[1],
            "chunk": r[2],
            "start": r[3],
            "end": r[4],
            "text": r[5],
            "title": r[6],
            "metadata": json.loads(r[7]) if r[7] else {},
        }
        for r in found
    }


def unknown_keys(conn, schema: str, keys: list[str]) -> list[str]:
    found = conn.execute(
        f"SELECT k FROM unnest(%s::text[]) AS k WHERE NOT EXISTS (SELECT 1 FROM {schema}.chunks c "
        "WHERE c.metadata ? k)",
        [keys],
    ).fetchall()
    missing = {r[0] for r in found}
    return [k for k in keys if k in missing]
