"""The fused update of one kernel call, checked against a plain numpy reference."""

import numpy as np

from recembed.seq2vec.kernels import (
    MAX_EXP,
    WHOLE_SEQUENCE,
    WINDOW,
    sigmoid_table,
    train_chunk,
)

ALWAYS_KEEP = np.uint64(2**32)
SIGMOID = sigmoid_table()


def table_sigmoid(x: float) -> np.float32:
    if x >= MAX_EXP:
        return np.float32(1.0)
    if x <= -MAX_EXP:
        return np.float32(0.0)
    return SIGMOID[int((x + MAX_EXP) * (SIGMOID.shape[0] / (2 * MAX_EXP)))]


def reference_targets(inp, syn1neg, center, noise_word, alpha):
    """Positive center then one negative; returns the input's gradient step."""
    grad = np.zeros_like(inp)
    for target, label in ((center, 1.0), (noise_word, 0.0)):
        if label == 0.0 and target == center:
            continue
        g = np.float32((label - table_sigmoid(float(inp @ syn1neg[target]))) * alpha)
        grad += g * syn1neg[target]
        syn1neg[target] += g * inp
    return grad


def run_kernel(syn0, syn1neg, sentence, *, skip_gram, cbow_mean=True, window=1, rule=WINDOW, alpha=0.1):
    vocab = syn0.shape[0]
    noise_word = vocab - 1
    tokens = np.array(sentence, dtype=np.int32)
    offsets = np.array([0, len(sentence)], dtype=np.int64)
    keep = np.full(vocab, ALWAYS_KEEP, dtype=np.uint64)
    # Never accept the drawn column, always take its alias: every negative is `noise_word`.
    noise_threshold = np.zeros(vocab, dtype=np.uint64)
    noise_alias = np.full(vocab, noise_word, dtype=np.int32)
    return train_chunk(syn0, syn1neg, tokens, offsets, 0, 1, keep, noise_threshold, noise_alias, SIGMOID,
                       skip_gram, cbow_mean, window, False, rule, 1, alpha, alpha, 0, 10, 7)


def start_weights(vocab=4, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, (vocab, dim)).astype(np.float32), rng.normal(0, 0.5, (vocab, dim)).astype(np.float32)


def test_skip_gram_update_matches_reference():
    syn0, syn1 = start_weights()
    ref0, ref1 = syn0.copy(), syn1.copy()
    sentence = [0, 1, 2]
    effective, raw = run_kernel(syn0, syn1, sentence, skip_gram=True)
    assert (effective, raw) == (3, 3)
    for pos in range(3):
        for q in (pos - 1, pos + 1):
            if 0 <= q < 3:
                inp = ref0[sentence[q]]
                inp += reference_targets(inp, ref1, sentence[pos], 3, 0.1)
    np.testing.assert_allclose(syn0, ref0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(syn1, ref1, rtol=1e-5, atol=1e-6)


def test_cbow_mean_update_matches_reference():
    syn0, syn1 = start_weights(seed=1)
    ref0, ref1 = syn0.copy(), syn1.copy()
    sentence = [0, 1, 2]
    run_kernel(syn0, syn1, sentence, skip_gram=False, cbow_mean=True)
    for pos in range(3):
        context = [sentence[q] for q in (pos - 1, pos + 1) if 0 <= q < 3]
        hidden = ref0[context].mean(axis=0)
        grad = reference_targets(hidden, ref1, sentence[pos], 3, 0.1)
        for word in context:
            ref0[word] += grad
    np.testing.assert_allclose(syn0, ref0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(syn1, ref1, rtol=1e-5, atol=1e-6)


def test_whole_sequence_rule_pairs_every_position():
    # With a window of 1 the ends of [0, 1, 2] never meet; the whole-sequence rule pairs them.
    syn0_w, syn1_w = start_weights(seed=2)
    syn0_a, syn1_a = syn0_w.copy(), syn1_w.copy()
    ref0, ref1 = syn0_w.copy(), syn1_w.copy()
    run_kernel(syn0_w, syn1_w, [0, 1, 2], skip_gram=True, window=1, rule=WINDOW)
    run_kernel(syn0_a, syn1_a, [0, 1, 2], skip_gram=True, window=1, rule=WHOLE_SEQUENCE)
    for pos in range(3):
        for q in range(3):
            if q != pos:
                ref0[q] += reference_targets(ref0[q], ref1, pos, 3, 0.1)
    np.testing.assert_allclose(syn0_a, ref0, rtol=1e-5, atol=1e-6)
    assert not np.allclose(syn0_a, syn0_w)


def test_learning_rate_decays_linearly_over_the_schedule():
    # A sentence at the end of the schedule (position 10 of 10) trains with alpha_end, not alpha_start.
    late0, late1 = start_weights(seed=3)
    ref0, ref1 = late0.copy(), late1.copy()
    tokens = np.array([0, 1], dtype=np.int32)
    offsets = np.array([0, 2], dtype=np.int64)
    keep = np.full(4, ALWAYS_KEEP, dtype=np.uint64)
    thr = np.zeros(4, dtype=np.uint64)
    alias = np.full(4, 3, dtype=np.int32)
    train_chunk(late0, late1, tokens, offsets, 0, 1, keep, thr, alias, SIGMOID, True, True, 1, False, WINDOW,
                1, 0.5, 0.01, 10, 10, 7)
    for pos, q in ((0, 1), (1, 0)):
        ref0[q] += reference_targets(ref0[q], ref1, pos, 3, np.float32(0.01))
    np.testing.assert_allclose(late0, ref0, rtol=1e-5, atol=1e-7)
