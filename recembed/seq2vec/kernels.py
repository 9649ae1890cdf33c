"""Numba kernels: skip-gram / CBOW with negative sampling over a chunk of sentences.

One call trains a contiguous run of sentences of an encoded corpus (``tokens`` int32 plus
``offsets``) and updates the two weight matrices in place: ``syn0`` ``(V, D)`` (the input
vectors that become the embeddings) and ``syn1neg`` ``(V, D)`` (the output vectors).
Every (input, target) step reads and writes the touched rows directly - gradients are
never materialised beyond one ``D``-float scratch row - so several threads can call the
kernel on different chunks at once and race on shared rows (lock-free "Hogwild" SGD, as
in the original word2vec). The kernels release the GIL (``nogil``).

The kernels are bound by memory latency on random rows, so they draw each update's noise
words one update ahead and prefetch those rows (and the next center's) while computing.

Randomness (subsampling, window shrinking, negatives) comes from a 64-bit linear
congruential generator seeded per call, so a chunk trains the same way whichever thread
runs it; with one worker training is fully deterministic.

Context rules:
    * ``WINDOW``: positions within a (possibly shrunk) window around the center.
    * ``WHOLE_SEQUENCE``: every other position of the sentence (Item2Vec's baskets).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from recembed.kernels.prefetch import prefetch_row

__all__ = [
    "MAX_EXP",
    "WHOLE_SEQUENCE",
    "WINDOW",
    "chunk_boundaries",
    "drop_negative_tokens",
    "sigmoid_table",
    "train_chunk",
]

WINDOW = 0
WHOLE_SEQUENCE = 1

#: Logits beyond +-MAX_EXP saturate the sigmoid (as in word2vec).
MAX_EXP = 6.0
_SIGMOID_SIZE = 1024

_LCG_MUL = np.uint64(6364136223846793005)
_LCG_INC = np.uint64(1442695040888963407)
_SHIFT_32 = np.uint64(32)
_ALWAYS = np.uint64(1 << 32)


def sigmoid_table(size: int = _SIGMOID_SIZE) -> np.ndarray:
    """``(size,)`` float32 sigmoid sampled at cell centers of ``[-MAX_EXP, MAX_EXP]``."""
    x = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 * MAX_EXP - MAX_EXP
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


@njit(cache=True, nogil=True)
def _next_u32(state):
    """Advance the LCG; return the new state and its upper 32 bits (the good ones)."""
    state = state * _LCG_MUL + _LCG_INC
    return state, state >> _SHIFT_32


@njit(cache=True, nogil=True)
def _below(r32, n):
    """Map a uniform 32-bit value to ``[0, n)`` without division (multiply-shift)."""
    return np.int64((r32 * np.uint64(n)) >> _SHIFT_32)


@njit(cache=True, nogil=True)
def _draw_negatives(negatives, noise_threshold, noise_alias, syn1neg, state):
    """Fill ``negatives`` with noise words (alias method) and prefetch their output rows."""
    vocab = noise_alias.shape[0]
    for d in range(negatives.shape[0]):
        state, r = _next_u32(state)
        target = _below(r, vocab)
        state, r = _next_u32(state)
        if r >= noise_threshold[target]:
            target = noise_alias[target]
        negatives[d] = target
        prefetch_row(syn1neg, target)
    return state


@njit(cache=True, nogil=True, fastmath=True)
def _negative_sampling_step(inp, syn1neg, center, negatives, sigmoid, alpha, grad_inp):
    """Score ``inp`` against the center's output row (label 1) and the noise rows (label 0).

    Updates each output row in place and accumulates the input's gradient step into
    ``grad_inp`` (the caller applies it). A noise word equal to the center is skipped.
    """
    dim = inp.shape[0]
    last_cell = sigmoid.shape[0] - 1
    scale = np.float32(sigmoid.shape[0] / (2.0 * MAX_EXP))
    for d in range(negatives.shape[0] + 1):
        if d == 0:
            target = center
            label = np.float32(1.0)
        else:
            target = negatives[d - 1]
            if target == center:
                continue
            label = np.float32(0.0)
        out = syn1neg[target]
        logit = np.float32(0.0)
        for k in range(dim):
            logit += inp[k] * out[k]
        if logit >= MAX_EXP:
            prob = np.float32(1.0)
        elif logit <= -MAX_EXP:
            prob = np.float32(0.0)
        else:
            # Clamped in integers: a diverged (NaN) logit must not index outside the table.
            cell = min(max(np.int64((logit + MAX_EXP) * scale), 0), last_cell)
            prob = sigmoid[cell]
        g = (label - prob) * alpha
        for k in range(dim):
            grad_inp[k] += g * out[k]
            out[k] += g * inp[k]


@njit(cache=True, nogil=True)
def _context_span(position, length, window, shrink_windows, context_rule, state):
    """Half-open range of context positions around ``position``; advances the RNG if shrinking."""
    if context_rule == WHOLE_SEQUENCE:
        return 0, length, state
    reach = window
    if shrink_windows:
        state, r = _next_u32(state)
        reach = window - _below(r, window)
    lo = position - reach
    lo = max(lo, 0)
    hi = position + reach + 1
    hi = min(hi, length)
    return lo, hi, state


@njit(cache=True, nogil=True, fastmath=True)
def train_chunk(syn0, syn1neg, tokens, offsets, first_sentence, end_sentence,
                keep_threshold, noise_threshold, noise_alias, sigmoid,
                skip_gram, cbow_mean, window, shrink_windows, context_rule, negative,
                alpha_start, alpha_end, schedule_position, schedule_total, seed):
    """Train sentences ``[first_sentence, end_sentence)`` with negative sampling.

    Args:
        syn0, syn1neg: ``(V, D)`` float32 input / output vectors, updated in place.
        tokens: ``(N,)`` int32 token ids; ``offsets``: ``(S + 1,)`` int64 sentence starts.
        keep_threshold: ``(V,)`` uint64 subsampling thresholds (``2**32`` = always keep).
        noise_threshold, noise_alias: ``(V,)`` alias tables of the noise distribution.
        sigmoid: float32 lookup table from :func:`sigmoid_table`.
        skip_gram: True for skip-gram, False for CBOW; ``cbow_mean``: average (True) or sum.
        context_rule: ``WINDOW`` or ``WHOLE_SEQUENCE``.
        negative: noise words per positive.
        alpha_start, alpha_end: learning rate at schedule positions 0 and ``schedule_total``;
            it decays linearly with ``schedule_position`` + raw tokens seen in this chunk.
        seed: seeds this chunk's random stream.

    Returns:
        ``(effective_words, raw_words)``: tokens trained after subsampling, and tokens read.
    """
    dim = syn0.shape[1]
    longest = 0
    for s in range(first_sentence, end_sentence):
        longest = max(longest, offsets[s + 1] - offsets[s])
    kept = np.empty(longest, dtype=np.int32)
    hidden = np.empty(dim, dtype=np.float32)
    grad = np.empty(dim, dtype=np.float32)
    # Noise words are drawn one update ahead so their rows load while the current one computes.
    negatives = np.empty(negative, dtype=np.int32)
    upcoming = np.empty(negative, dtype=np.int32)
    state = np.uint64(seed) * _LCG_MUL + _LCG_INC
    state = _draw_negatives(upcoming, noise_threshold, noise_alias, syn1neg, state)
    effective = 0
    raw = 0
    for s in range(first_sentence, end_sentence):
        start = offsets[s]
        stop = offsets[s + 1]
        progress = (schedule_position + raw) / schedule_total
        progress = min(progress, 1.0)
        alpha = np.float32(alpha_start - (alpha_start - alpha_end) * progress)
        raw += stop - start
        # Subsample frequent tokens; the kept ones form the sentence that is trained.
        length = 0
        for t in range(start, stop):
            word = tokens[t]
            threshold = keep_threshold[word]
            if threshold < _ALWAYS:
                state, r = _next_u32(state)
                if r >= threshold:
                    continue
            kept[length] = word
            length += 1
        effective += length
        if length < 2:
            continue
        for pos in range(length):
            center = kept[pos]
            if pos + 1 < length:
                prefetch_row(syn1neg, kept[pos + 1])
            if pos + window + 1 < length:  # the input row entering the next window
                prefetch_row(syn0, kept[pos + window + 1])
            lo, hi, state = _context_span(pos, length, window, shrink_windows, context_rule, state)
            if skip_gram:
                for q in range(lo, hi):
                    if q == pos:
                        continue
                    negatives, upcoming = upcoming, negatives
                    state = _draw_negatives(upcoming, noise_threshold, noise_alias, syn1neg, state)
                    inp = syn0[kept[q]]
                    for k in range(dim):
                        grad[k] = 0.0
                    _negative_sampling_step(inp, syn1neg, center, negatives, sigmoid, alpha, grad)
                    for k in range(dim):
                        inp[k] += grad[k]
            else:
                count = hi - lo - 1
                if count < 1:
                    continue
                negatives, upcoming = upcoming, negatives
                state = _draw_negatives(upcoming, noise_threshold, noise_alias, syn1neg, state)
                for k in range(dim):
                    hidden[k] = 0.0
                for q in range(lo, hi):
                    if q == pos:
                        continue
                    row = syn0[kept[q]]
                    for k in range(dim):
                        hidden[k] += row[k]
                inv_count = np.float32(1.0 / count)
                if cbow_mean:
                    for k in range(dim):
                        hidden[k] *= inv_count
                for k in range(dim):
                    grad[k] = 0.0
                _negative_sampling_step(hidden, syn1neg, center, negatives, sigmoid, alpha, grad)
                # A summed input spreads its error over the context words it summed.
                if not cbow_mean:
                    for k in range(dim):
                        grad[k] *= inv_count
                for q in range(lo, hi):
                    if q == pos:
                        continue
                    row = syn0[kept[q]]
                    for k in range(dim):
                        row[k] += grad[k]
    return effective, raw


@njit(cache=True)
def drop_negative_tokens(tokens, offsets):
    """Remove ids < 0 (out-of-vocabulary markers) in place; return the compacted views.

    Args:
        tokens: ``(N,)`` int32, modified in place; offsets: ``(S + 1,)`` int64, modified in place.

    Returns:
        ``(tokens[:M], offsets)`` where ``M`` is the number of kept tokens.
    """
    write = 0
    read_start = offsets[0]
    for s in range(offsets.shape[0] - 1):
        read_stop = offsets[s + 1]
        offsets[s] = write
        for t in range(read_start, read_stop):
            if tokens[t] >= 0:
                tokens[write] = tokens[t]
                write += 1
        read_start = read_stop
    offsets[offsets.shape[0] - 1] = write
    return tokens[:write], offsets


def chunk_boundaries(offsets: np.ndarray, chunk_words: int) -> np.ndarray:
    """Sentence indices that cut the corpus into chunks of about ``chunk_words`` tokens.

    Returns:
        ``(C + 1,)`` int64 increasing sentence indices from 0 to S; every chunk holds at
        least one sentence.
    """
    num_sentences = offsets.shape[0] - 1
    if num_sentences == 0:
        return np.zeros(1, dtype=np.int64)
    total = int(offsets[-1])
    targets = np.arange(chunk_words, total, chunk_words, dtype=np.int64)
    cuts = np.searchsorted(offsets, targets, side="left")
    bounds = np.unique(np.concatenate(([0], cuts, [num_sentences])).astype(np.int64))
    return bounds
