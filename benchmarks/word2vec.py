"""Word2Vec: recembed against gensim on a synthetic corpus with planted word similarity.

The corpus comes from a latent "ring" language model. Every content word sits at an
angle on a circle and has a Zipfian frequency; a sentence picks a center angle and draws
each content token near it (Gaussian offset on the circle), mixed with topic-free
function words. Two words are therefore more similar the closer their angles, which
gives a graded ground truth: the word-similarity set scores a pair by minus its ring
distance, and both libraries are judged by the Spearman correlation of their cosines with
it.

Both libraries get the same list of token lists and the same parameters (dim 100,
window 5, negative 5, 5 epochs, 2 workers, sample 1e-3, min_count 5), once with sg=1 and
once with sg=0. Reported speeds are training-phase speeds: effective words/s (tokens left
after subsampling, as gensim logs) and raw tokens/s; vocabulary building is timed apart.

Run:  python benchmarks/word2vec.py --tokens 15000000
Writes benchmarks/results/word2vec.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from recembed.seq2vec import Word2Vec, evaluate_word_pairs

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "word2vec.json")


# -- the synthetic language ------------------------------------------------------------------
def make_language(num_words: int, num_function_words: int, seed: int) -> dict:
    """Angles and Zipfian weights of content words, and weights of function words."""
    rng = np.random.default_rng(seed)
    angles = rng.random(num_words) * 2 * np.pi
    ranks = rng.permutation(num_words) + 1
    weights = 1.0 / ranks**1.0
    function_weights = 1.0 / (np.arange(num_function_words) + 1.0)
    return {"angles": angles, "weights": weights, "function_weights": function_weights / function_weights.sum()}


def generate_corpus(language: dict, num_tokens: int, sigma: float, function_share: float,
                    num_bins: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (content words 0..W-1, function words W..) and sentence offsets."""
    rng = np.random.default_rng(seed + 1)
    angles, weights = language["angles"], language["weights"]
    num_words = angles.shape[0]
    # Words grouped by angle bin so "a word near angle a" is one searchsorted away.
    bin_of_word = np.minimum((angles / (2 * np.pi) * num_bins).astype(np.int64), num_bins - 1)
    order = np.argsort(bin_of_word, kind="stable")
    cum = np.cumsum(weights[order])
    bin_end = np.searchsorted(bin_of_word[order], np.arange(num_bins), side="right")
    bin_hi = cum[bin_end - 1]
    bin_lo = np.concatenate(([0.0], bin_hi[:-1]))
    lengths = rng.integers(8, 33, size=num_tokens // 20 + 1)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), num_tokens) + 1]
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    total = int(offsets[-1])
    sentence_of_token = np.repeat(np.arange(lengths.shape[0]), lengths)
    center = rng.random(lengths.shape[0]) * num_bins
    sigma_bins = sigma / (2 * np.pi) * num_bins
    token_bin = np.floor(center[sentence_of_token] + rng.normal(0.0, sigma_bins, total)).astype(np.int64) % num_bins
    # Empty bins borrow their neighbour's words.
    empty = bin_hi == bin_lo
    if empty.any():
        filled = np.flatnonzero(~empty)
        nearest = filled[np.minimum(np.searchsorted(filled, np.arange(num_bins)), filled.shape[0] - 1)]
        token_bin = nearest[token_bin]
    u = bin_lo[token_bin] + rng.random(total) * (bin_hi[token_bin] - bin_lo[token_bin])
    tokens = order[np.minimum(np.searchsorted(cum, u, side="right"), num_words - 1)]
    is_function = rng.random(total) < function_share
    function_ids = rng.choice(language["function_weights"].shape[0], size=int(is_function.sum()),
                              p=language["function_weights"])
    tokens[is_function] = num_words + function_ids
    return tokens.astype(np.int64), offsets.astype(np.int64)


def similarity_pairs(language: dict, counts: np.ndarray, sigma: float, num_pairs: int, min_count: int,
                     seed: int) -> list[tuple[int, int, float]]:
    """Pairs of frequent content words scored by minus their ring distance.

    Half the pairs are drawn close (within 4 sigma, where co-occurrence carries signal)
    and half at random, so the set spans near-synonyms to unrelated words.
    """
    rng = np.random.default_rng(seed + 2)
    angles = language["angles"]
    frequent = np.flatnonzero(counts[: angles.shape[0]] >= 20 * min_count)
    by_angle = frequent[np.argsort(angles[frequent])]
    pairs = []
    while len(pairs) < num_pairs:
        a = int(rng.choice(by_angle))
        if len(pairs) % 2 == 0:
            target = (angles[a] + rng.uniform(-4 * sigma, 4 * sigma)) % (2 * np.pi)
            idx = np.searchsorted(angles[by_angle], target) % by_angle.shape[0]
            b = int(by_angle[idx])
        else:
            b = int(rng.choice(by_angle))
        if a == b:
            continue
        delta = abs(angles[a] - angles[b]) % (2 * np.pi)
        pairs.append((a, b, -min(delta, 2 * np.pi - delta)))
    return pairs


# -- runners ----------------------------------------------------------------------------------
PARAMS = {"vector_size": 100, "window": 5, "negative": 5, "epochs": 5, "workers": 2, "sample": 1e-3,
          "min_count": 5, "alpha": 0.025, "min_alpha": 0.0001, "seed": 1}


def run_recembed(sentences: list[list[str]], sg: int) -> dict:
    model = Word2Vec(sg=sg, **PARAMS)
    t0 = time.perf_counter()
    model.build_vocab(sentences)
    t1 = time.perf_counter()
    effective, raw = model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
    t2 = time.perf_counter()
    return {"kv": model.wv, "vocab_seconds": t1 - t0, "train_seconds": t2 - t1,
            "effective_words": effective, "raw_words": raw}


def run_gensim(sentences: list[list[str]], sg: int) -> dict | None:
    try:
        from gensim.models import Word2Vec as GensimWord2Vec
    except ImportError:
        return None
    model = GensimWord2Vec(sg=sg, **PARAMS)
    t0 = time.perf_counter()
    model.build_vocab(sentences)
    t1 = time.perf_counter()
    effective, raw = model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
    t2 = time.perf_counter()
    return {"kv": model.wv, "vocab_seconds": t1 - t0, "train_seconds": t2 - t1,
            "effective_words": effective, "raw_words": raw}


def summarise(result: dict, pairs_str: list) -> dict:
    evaluation = evaluate_word_pairs(result["kv"], pairs_str)
    return {
        "vocab_seconds": round(result["vocab_seconds"], 3),
        "train_seconds": round(result["train_seconds"], 3),
        "effective_words": int(result["effective_words"]),
        "raw_words": int(result["raw_words"]),
        "effective_words_per_second": result["effective_words"] / result["train_seconds"],
        "raw_words_per_second": result["raw_words"] / result["train_seconds"],
        "spearman": evaluation.spearman,
        "pairs_evaluated": evaluation.evaluated,
        "pairs_skipped": evaluation.skipped,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=15_000_000, help="corpus size in tokens")
    parser.add_argument("--words", type=int, default=30_000, help="content vocabulary size")
    parser.add_argument("--pairs", type=int, default=2_000, help="word pairs in the similarity set")
    parser.add_argument("--sg", type=int, nargs="+", default=[1, 0], help="architectures to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)

    sigma = 0.05
    t0 = time.perf_counter()
    language = make_language(args.words, num_function_words=100, seed=args.seed)
    tokens, offsets = generate_corpus(language, args.tokens, sigma=sigma, function_share=0.3,
                                      num_bins=2000, seed=args.seed)
    names = [f"w{i}" for i in range(args.words)] + [f"f{i}" for i in range(100)]
    pick = names.__getitem__
    flat_names = list(map(pick, tokens.tolist()))
    sentences = [flat_names[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    del flat_names
    counts = np.bincount(tokens, minlength=len(names))
    pairs = similarity_pairs(language, counts, sigma, args.pairs, PARAMS["min_count"], seed=args.seed)
    pairs_str = [(names[a], names[b], s) for a, b, s in pairs]
    print(f"corpus: {tokens.shape[0]:,} tokens, {len(sentences):,} sentences, "
          f"{int((counts > 0).sum()):,} distinct words; {len(pairs_str)} similarity pairs "
          f"(generated in {time.perf_counter() - t0:.1f}s)")

    try:
        import gensim
        gensim_version = gensim.__version__
    except ImportError:
        gensim_version = None
        print("note: gensim is not installed (pip install gensim); only recembed is measured")

    load_before = os.getloadavg()[0]
    rows = []
    for sg in args.sg:
        ours = summarise(run_recembed(sentences, sg), pairs_str)
        theirs_raw = run_gensim(sentences, sg) if gensim_version else None
        theirs = summarise(theirs_raw, pairs_str) if theirs_raw else None
        row = {"sg": sg, "recembed": ours, "gensim": theirs}
        if theirs:
            row["effective_speed_ratio"] = ours["effective_words_per_second"] / theirs["effective_words_per_second"]
            row["raw_speed_ratio"] = ours["raw_words_per_second"] / theirs["raw_words_per_second"]
            row["spearman_difference"] = ours["spearman"] - theirs["spearman"]
        rows.append(row)

    header = (f"{'model':<10}{'library':<10}{'vocab s':>9}{'train s':>9}{'eff. words/s':>14}"
              f"{'raw words/s':>13}{'spearman':>10}{'speed x':>9}{'d spearman':>12}")
    print(header)
    print("-" * len(header))
    for row in rows:
        label = "skip-gram" if row["sg"] else "CBOW"
        for library in ("recembed", "gensim"):
            r = row[library]
            if r is None:
                continue
            ratio = f"{row['effective_speed_ratio']:.2f}" if library == "recembed" and row["gensim"] else ""
            diff = f"{row['spearman_difference']:+.4f}" if library == "recembed" and row["gensim"] else ""
            print(f"{label:<10}{library:<10}{r['vocab_seconds']:>9.2f}{r['train_seconds']:>9.2f}"
                  f"{r['effective_words_per_second']:>14,.0f}{r['raw_words_per_second']:>13,.0f}"
                  f"{r['spearman']:>10.4f}{ratio:>9}{diff:>12}")

    load_after = os.getloadavg()[0]
    # Other processes compete for the same cores; both libraries run interleaved under it.
    print(f"1-minute load average: {load_before:.1f} before, {load_after:.1f} after ({os.cpu_count()} cpus)")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    report = {"benchmark": "word2vec", "tokens": int(tokens.shape[0]), "sentences": len(sentences),
              "params": PARAMS, "gensim_version": gensim_version, "machine": platform.machine(),
              "cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after,
              "rows": rows}
    with open(args.output, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
