"""koe5.distributed on a real local Ray cluster: builds equal to the single-process build, a killed
actor, resume, a bad address, Parquet shards, the CLI."""

import json
import time

import numpy as np
import pytest

from koe5.distributed import RayEngine, encode_to_parquet, read_vectors
from koe5.distributed.actors import Plan
from koe5.distributed.engine import check_reachable
from koe5.distributed.indexing import ACTOR_PREFIX
from koe5.errors import EngineError, InputError
from koe5.search import Index, KiwiAnalyzer, store

ray = pytest.importorskip("ray")  # koe5[ray]: installed by scripts/setup and CI

QUERIES = ("대한민국 수도", "한라산 눈", "도서관 책")


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module, as a user's own ``ray.init`` (koe5 joins it, never stops it)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def single(tiny, docs, tmp_path_factory):
    return Index.build(docs, tiny, tmp_path_factory.mktemp("single") / "i", chunk_tokens=64, overlap=8,
                       segment_docs=4)  # fmt: skip


def _same_index(a: Index, b: Index) -> None:
    """The same segments, chunks, terms and search results; vectors within fp32 rounding."""
    assert a.manifest["counts"] == b.manifest["counts"]
    assert [s["documents"] for s in a.manifest["segments"]] == [
        s["documents"] for s in b.manifest["segments"]
    ]
    for x, y in zip(a.manifest["segments"], b.manifest["segments"], strict=True):
        sa, sb = store.read_segment(a.folder, x["name"]), store.read_segment(b.folder, y["name"])
        assert sa.table.equals(sb.table)
        np.testing.assert_allclose(np.asarray(sa.vectors), np.asarray(sb.vectors), atol=1e-5)
        assert store.read_segment_tokens(a.folder, x["name"]) == store.read_segment_tokens(
            b.folder, y["name"]
        )
    for query in QUERIES:
        for mode in ("dense", "bm25", "hybrid"):
            ha = [(h.chunk_id, round(h.score, 4)) for h in a.search(query, k=10, mode=mode)]
            hb = [(h.chunk_id, round(h.score, 4)) for h in b.search(query, k=10, mode=mode)]
            assert ha == hb, (query, mode)


def test_a_ray_build_is_the_single_process_build(cluster, single, tiny, docs, tmp_path):
    built = Index.build(docs, tiny, tmp_path / "r", chunk_tokens=64, overlap=8, segment_docs=4,
                        engine=RayEngine(actors=2))  # fmt: skip
    assert built.last_report["documents"] == len(docs)
    _same_index(single, built)
    assert built.manifest["bm25"] == single.manifest["bm25"]
    assert not ray.util.list_named_actors()  # the build's actors are gone with it


def test_actors_started_before_the_model_serve_builds_equal_to_the_single_process_build(
    cluster, single, tiny, docs, tmp_path
):
    with RayEngine(actors=2).started() as engine:
        actors = sorted(n for n in ray.util.list_named_actors() if n.startswith(ACTOR_PREFIX))
        assert len(actors) == 2  # started before any build (and before a model is loaded)
        built = [
            Index.build(
                docs, tiny, tmp_path / name, chunk_tokens=64, overlap=8, segment_docs=4, engine=engine
            )
            for name in ("a", "b")  # two builds, one after the other, on the same actors
        ]
        assert sorted(n for n in ray.util.list_named_actors() if n.startswith(ACTOR_PREFIX)) == actors
        with pytest.raises(EngineError, match="started with Kiwi settings"):
            Index.build(docs, tiny, tmp_path / "c", analyzer=KiwiAnalyzer(["NNG"]), engine=engine)

        def interrupted():
            for i, doc in enumerate(docs):
                if i == 9:
                    raise KeyboardInterrupt
                yield doc

        with pytest.raises(KeyboardInterrupt):
            Index.build(
                interrupted(), tiny, tmp_path / "d", chunk_tokens=64, overlap=8, segment_docs=4, engine=engine
            )
        # pieces of the stopped build may still be queued on the actors: they take no other build
        with pytest.raises(EngineError, match="a build on these started actors failed"):
            Index.build(docs, tiny, tmp_path / "e", chunk_tokens=64, overlap=8, engine=engine)
    for index in built:
        _same_index(single, index)
    assert not ray.util.list_named_actors()


def test_a_killed_actor_is_restarted_and_the_build_completes(cluster, single, tiny, docs, tmp_path):
    killed = []

    def documents():
        for i, doc in enumerate(docs):
            if i == 9:  # two segments are in flight or done: kill the actor of the first
                names = sorted(n for n in ray.util.list_named_actors() if n.startswith(ACTOR_PREFIX))
                ray.kill(ray.get_actor(names[0]), no_restart=False)
                killed.append(names[0])
            yield doc

    built = Index.build(documents(), tiny, tmp_path / "k", chunk_tokens=64, overlap=8, segment_docs=4,
                        engine=RayEngine(actors=2))  # fmt: skip
    assert killed
    _same_index(single, built)


def test_an_interrupted_ray_build_resumes_without_reencoding(cluster, single, tiny, docs, tmp_path):
    def interrupted():
        for i, doc in enumerate(docs):
            if i == 12:
                raise KeyboardInterrupt
            yield doc

    engine = RayEngine(actors=1, in_flight=1)
    with pytest.raises(KeyboardInterrupt):
        Index.build(
            interrupted(), tiny, tmp_path / "x", chunk_tokens=64, overlap=8, segment_docs=4, engine=engine
        )
    partial = tmp_path / ".x.partial"
    done = store.read_manifest(partial, allow_building=True)["segments"]
    assert done  # at least one finished segment is the resume point
    first = partial / "segments" / done[0]["name"] / "vectors.npy"
    written = first.stat().st_mtime_ns
    resumed = Index.build(docs, tiny, tmp_path / "x", chunk_tokens=64, overlap=8, segment_docs=4,
                          engine=engine, resume=True)  # fmt: skip
    assert resumed.last_report["resumed_documents"] == sum(s["documents"] for s in done)
    assert (resumed.folder / "segments" / done[0]["name"] / "vectors.npy").stat().st_mtime_ns == written
    _same_index(single, resumed)


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_address_that_does_not_answer_is_a_clear_error_in_bounded_time(address):
    started = time.monotonic()
    engine = RayEngine(address=address, connect_timeout=2)
    with pytest.raises(EngineError, match=f"no Ray cluster answers at {address}"), engine.session():
        pass
    assert time.monotonic() - started < 10


def test_actors_follow_the_cluster_gpu_actors_where_it_has_gpus():
    assert RayEngine()._plan({"CPU": 2.0}) == Plan(actors=2, cpus=1.0, gpus=0.0, restarts=3)
    assert RayEngine()._plan({"CPU": 16.0, "GPU": 4.0}).actors == 4
    assert RayEngine()._plan({"CPU": 16.0, "GPU": 4.0}).gpus == 1.0
    assert RayEngine(gpus_per_actor=0.5)._plan({"CPU": 16.0, "GPU": 4.0}).actors == 8
    assert RayEngine(gpus_per_actor=0, actors=3)._plan({"CPU": 16.0, "GPU": 4.0}) == Plan(3, 1.0, 0, 3)
    with pytest.raises(EngineError, match="has no GPUs"):
        RayEngine(gpus_per_actor=1)._plan({"CPU": 2.0})


def test_bad_engine_settings_are_named():
    with pytest.raises(EngineError, match="not auto, host:port"):
        check_reachable("nowhere", 1)
    with pytest.raises(InputError, match="actors must be at least 1"):
        RayEngine(actors=0)


def test_parquet_shards_on_ray_equal_local_and_resume(cluster, tiny, sample_texts, tmp_path):
    texts = [t for t in sample_texts if t.strip()] * 2
    ids = [f"t{i}" for i in range(len(texts))]
    local = encode_to_parquet(texts, tiny, tmp_path / "local", ids=ids, shard_texts=7)
    assert local == {"texts": len(texts), "shards": -(-len(texts) // 7), "resumed_shards": 0, "dim": tiny.dim}
    on_ray = encode_to_parquet(
        texts, tiny, tmp_path / "ray", ids=ids, shard_texts=7, engine=RayEngine(actors=2)
    )
    assert on_ray == local
    la, lv = read_vectors(tmp_path / "local")
    ra, rv = read_vectors(tmp_path / "ray")
    assert la == ra == ids
    np.testing.assert_allclose(lv, rv, atol=1e-5)
    np.testing.assert_allclose(lv, tiny.encode(texts, "passage"), atol=1e-5)

    (tmp_path / "ray" / "part-000001.parquet").unlink()  # as if the run had stopped before it
    one = RayEngine(actors=1)
    again = encode_to_parquet(texts, tiny, tmp_path / "ray", ids=ids, shard_texts=7, engine=one, resume=True)
    assert again["resumed_shards"] == again["shards"] - 1
    assert read_vectors(tmp_path / "ray")[0] == ids
    with pytest.raises(InputError, match="other shard_texts"):
        encode_to_parquet(texts, tiny, tmp_path / "ray", ids=ids, shard_texts=5, resume=True)
    with pytest.raises(InputError, match="not empty"):
        encode_to_parquet(texts, tiny, tmp_path / "ray", ids=ids, shard_texts=7)


def test_the_cli_builds_and_encodes_on_ray(cluster, tiny_model_dir, docs, tmp_path):
    from typer.testing import CliRunner

    from koe5.cli import app

    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    runner = CliRunner()
    model = ["--model", str(tiny_model_dir)]
    ray_flags = ["--engine", "ray", "--actors", "1"]
    out = runner.invoke(
        app, ["-q", "index", "build", str(source), "-o", str(tmp_path / "i"), *ray_flags, "--json", *model]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["documents"] == len(docs)
    out = runner.invoke(
        app, ["-q", "encode", str(source), "-o", str(tmp_path / "v"), "--engine", "ray", *model]
    )
    assert out.exit_code == 0, out.output
    ids, vectors = read_vectors(tmp_path / "v")
    assert ids == [d["id"] for d in docs] and vectors.shape[0] == len(docs)
    out = runner.invoke(
        app, ["encode", str(source), "-o", str(tmp_path / "v.npy"), "--engine", "ray", *model]
    )
    assert out.exit_code != 0 and "give --output a folder" in out.output
    out = runner.invoke(app, ["encode", str(source), "--actors", "2", *model])
    assert out.exit_code != 0 and "need --engine ray" in out.output
