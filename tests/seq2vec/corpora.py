"""Small deterministic corpora with planted structure, shared by the seq2vec tests."""

from __future__ import annotations

import numpy as np


def topic_sentences(num_topics: int = 4, words_per_topic: int = 8, num_sentences: int = 600,
                    length: int = 10, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences that each draw all their words from one topic; returns (sentences, topics)."""
    rng = np.random.default_rng(seed)
    topics = [[f"t{t}w{w}" for w in range(words_per_topic)] for t in range(num_topics)]
    sentences = []
    for i in range(num_sentences):
        words = topics[i % num_topics]
        sentences.append([words[j] for j in rng.integers(0, words_per_topic, size=length)])
    return sentences, topics


def topic_separation(kv, topics: list[list]) -> tuple[float, float]:
    """Mean cosine between words of the same topic, and between words of different topics."""
    same, cross = [], []
    for a, words_a in enumerate(topics):
        for b, words_b in enumerate(topics):
            for x in words_a:
                for y in words_b:
                    if x == y:
                        continue
                    (same if a == b else cross).append(kv.similarity(x, y))
    return float(np.mean(same)), float(np.mean(cross))
