"""Tokenising long documents: whole texts against koe5's heads (``Encoder.tokenize_for_model``).

Only the first ``max_length`` tokens of a text reach the model, but a tokenizer reads the whole text.
koe5 tokenises a long text from its head (up to its last space before ``CLIP_CHARS_PER_TOKEN ×
max_length`` characters) and checks that the head alone has more than ``max_length`` tokens. This
times both on documents of 8 AutoRAG pages each (~6,600 characters, ~3,400 tokens), for a few values
of ``CLIP_CHARS_PER_TOKEN``, and checks that the truncated inputs are identical.

    python benchmarks/tokenize_long.py [--pages 720] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=720, help="AutoRAG pages, 8 to a document")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import koe5
    import koe5.encoder
    from koe5.registry import ensure_default_model
    from koe5.runtime.export import speed_samples

    enc = koe5.load(str(ensure_default_model()), device="cpu")
    _, pages = speed_samples(16, args.pages)
    docs = ["passage: " + " ".join(pages[i : i + 8]) for i in range(0, len(pages), 8)]

    def seconds(fn) -> float:
        fn()
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    whole_ids = enc.tokenize(docs)
    reference = [enc._truncate(ids) for ids in whole_ids]
    report = {
        "documents": len(docs),
        "mean_chars": round(sum(map(len, docs)) / len(docs)),
        "mean_tokens_whole": round(sum(map(len, whole_ids)) / len(docs)),
        "whole_s": round(seconds(lambda: enc.tokenize(docs)), 4),
        "heads": {},
    }
    default = koe5.encoder.CLIP_CHARS_PER_TOKEN
    for chars in (4, 6, 8):
        koe5.encoder.CLIP_CHARS_PER_TOKEN = chars
        exact = [enc._truncate(ids) for ids in enc.tokenize_for_model(docs)] == reference
        took = seconds(lambda: enc.tokenize_for_model(docs))
        report["heads"][chars] = {"seconds": round(took, 4), "speedup": round(report["whole_s"] / took, 2)}
        report["heads"][chars]["exact"] = exact
    koe5.encoder.CLIP_CHARS_PER_TOKEN = default
    report["default_chars_per_token"] = default
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['documents']} documents, {report['mean_chars']} characters, "
        f"{report['mean_tokens_whole']} tokens on average; whole texts {report['whole_s']} s"
    )
    for chars, r in report["heads"].items():
        mark = " (default)" if chars == default else ""
        print(f"  heads at {chars} chars/token{mark}: {r['seconds']} s, {r['speedup']}×, exact: {r['exact']}")


if __name__ == "__main__":
    main()
