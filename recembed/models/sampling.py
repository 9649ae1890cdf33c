"""Negative sampling and streaming item-frequency estimates, both feeding log-Q corrections.

- :class:`NegativeSampler` draws negatives uniformly or from a fixed distribution
  (e.g. ``count ** 0.75``) and returns each draw's log-probability.
- :class:`StreamingFrequencyEstimator` estimates, from the training stream itself, how
  often each item appears in a batch (Yi et al., "Sampling-Bias-Corrected Neural Modeling
  for Large Corpus Item Recommendations", RecSys 2019), for in-batch softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recembed.errors import ConfigError, IdOutOfRangeError, InvalidDtypeError
from recembed.sparse.hashing import hash_ids

__all__ = ["NegativeSampler", "StreamingFrequencyEstimator"]


class NegativeSampler:
    """Draw item ids from a fixed distribution over ``[0, num_items)``, with replacement.

    Args:
        num_items: size of the item vocabulary.
        probabilities: ``(num_items,)`` non-negative weights (normalised here), or None for
            uniform sampling. See :meth:`from_counts` for popularity ** power.
        seed: seeds the sampler's own generator, so draws repeat run to run.

    Example:
        >>> sampler = NegativeSampler.from_counts(torch.tensor([10.0, 1.0, 0.0, 5.0]), power=0.75, seed=0)
        >>> items, log_q = sampler.sample(2, 3)   # both (2, 3); item 2 is never drawn
    """

    def __init__(self, num_items: int, probabilities: torch.Tensor | None = None, seed: int = 0) -> None:
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise ConfigError(f"NegativeSampler: num_items must be an int >= 1, got {num_items!r}")
        self.num_items = num_items
        self._generator = torch.Generator().manual_seed(int(seed))
        if probabilities is None:
            self._cdf = None
            self._log_q = torch.full((num_items,), -math.log(num_items))
            return
        p = torch.as_tensor(probabilities, dtype=torch.float64).reshape(-1)
        if p.numel() != num_items:
            raise ConfigError(f"NegativeSampler: probabilities has {p.numel()} entries, expected num_items={num_items}")
        if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or float(p.sum()) <= 0:
            raise ConfigError("NegativeSampler: probabilities must be finite, >= 0 and not all zero")
        p = p / p.sum()
        cdf = torch.cumsum(p, dim=0)
        self._cdf = cdf / cdf[-1]
        self._log_q = torch.log(p).to(torch.float32)  # -inf for items that are never drawn

    @classmethod
    def from_counts(cls, counts: torch.Tensor, power: float = 0.75, seed: int = 0) -> NegativeSampler:
        """Sample items in proportion to ``counts ** power`` (0.75 as in word2vec; 0 is uniform)."""
        c = torch.as_tensor(counts, dtype=torch.float64).reshape(-1)
        if bool((c < 0).any()):
            raise ConfigError("NegativeSampler.from_counts: counts must be >= 0")
        # power=0 is uniform over every item (0 ** 0 == 1); with power > 0 unseen items are never drawn.
        return cls(c.numel(), c.pow(power), seed=seed)

    def sample(self, batch_size: int, num_negatives: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(batch_size, num_negatives)`` item ids and their log-probabilities (float32)."""
        if batch_size < 0 or num_negatives < 0:
            raise ConfigError(f"NegativeSampler.sample: sizes must be >= 0, got ({batch_size}, {num_negatives})")
        shape = (batch_size, num_negatives)
        if self._cdf is None:
            items = torch.randint(0, self.num_items, shape, generator=self._generator)
        else:
            u = torch.rand(shape, generator=self._generator, dtype=torch.float64)
            # First index whose cumulative probability exceeds u: zero-probability items are skipped.
            items = torch.searchsorted(self._cdf, u, right=True).clamp_(max=self.num_items - 1)
        return items, self._log_q[items]

    def log_q(self, items: torch.Tensor) -> torch.Tensor:
        """Log sampling probability of given item ids (any shape), e.g. of the positives."""
        if items.is_floating_point() or items.dtype == torch.bool:
            raise InvalidDtypeError(f"NegativeSampler.log_q: item ids must be integers, got {items.dtype}")
        if items.numel() and (int(items.min()) < 0 or int(items.max()) >= self.num_items):
            raise IdOutOfRangeError(
                f"NegativeSampler.log_q: item ids must lie in [0, {self.num_items}), "
                f"got range [{int(items.min())}, {int(items.max())}]"
            )
        return self._log_q.to(items.device)[items.long()]


class StreamingFrequencyEstimator(nn.Module):
    """Estimate each item's probability of appearing in a training batch, from the stream.

    Yi et al. (2019), Algorithm 2: ids are hashed into ``num_buckets``; bucket ``h`` keeps
    ``A[h]``, the step it was last seen, and ``B[h]``, a moving average of the number of
    steps between sightings: ``B[h] <- (1 - alpha) B[h] + alpha (t - A[h])``, then
    ``A[h] <- t``. The estimated probability is ``1 / B[h]``.

    Choices where the paper is silent: an id that occurs several times in one batch
    updates its bucket once (a second sighting in the same step would count a gap of 0);
    ``A`` starts at step 0, so the first gap of an item seen at step t is t, and that first
    gap starts the average (averaging it with an initial 0 would make every new item look
    frequent for ~1/alpha steps); an item never seen gets the gap ``max(t, 1)``. The state is kept in buffers, so it is saved with the
    model's ``state_dict``.

    Args:
        num_buckets: size of the hash arrays (collisions merge items; use >= vocabulary).
        alpha: moving-average rate in (0, 1].
        seed: selects the hash function.

    Example:
        >>> est = StreamingFrequencyEstimator(num_buckets=1 << 16, alpha=0.01)
        >>> log_q = est.update_and_log_q(item_ids)  # (B,), pass to in_batch_softmax_loss
    """

    step: torch.Tensor
    last_seen: torch.Tensor
    mean_gap: torch.Tensor

    def __init__(self, num_buckets: int, alpha: float = 0.01, seed: int = 0) -> None:
        super().__init__()
        if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 1:
            raise ConfigError(f"StreamingFrequencyEstimator: num_buckets must be an int >= 1, got {num_buckets!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 1.0:
            raise ConfigError(f"StreamingFrequencyEstimator: alpha must be in (0, 1], got {alpha!r}")
        self.num_buckets = num_buckets
        self.alpha = float(alpha)
        self.seed = seed
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("last_seen", torch.zeros(num_buckets, dtype=torch.int64))
        self.register_buffer("mean_gap", torch.zeros(num_buckets, dtype=torch.float64))

    def _buckets(self, item_ids: torch.Tensor) -> torch.Tensor:
        if item_ids.is_floating_point() or item_ids.dtype == torch.bool:
            raise InvalidDtypeError(f"StreamingFrequencyEstimator: item ids must be integers, got {item_ids.dtype}")
        return hash_ids(item_ids.reshape(-1), self.num_buckets, self.seed).to(self.last_seen.device)

    @torch.no_grad()
    def update(self, item_ids: torch.Tensor) -> None:
        """Record one training step in which ``item_ids`` (any shape) were seen."""
        self.step += 1
        buckets = torch.unique(self._buckets(item_ids))
        gap = (self.step - self.last_seen[buckets]).to(torch.float64)
        previous = self.mean_gap[buckets]
        # The first sighting starts the average at its gap (instead of averaging it with 0).
        averaged = (1.0 - self.alpha) * previous + self.alpha * gap
        self.mean_gap[buckets] = torch.where(previous > 0, averaged, gap)
        self.last_seen[buckets] = self.step

    @torch.no_grad()
    def probability(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Estimated per-step probability of each id, float32 of ``item_ids.shape``, in (0, 1]."""
        gap = self.mean_gap[self._buckets(item_ids)]
        unseen = torch.full_like(gap, float(max(int(self.step), 1)))
        gap = torch.where(gap > 0, gap, unseen).clamp(min=1.0)
        return (1.0 / gap).to(torch.float32).reshape(item_ids.shape)

    def log_q(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``log(probability(item_ids))``, float32 of ``item_ids.shape``."""
        return torch.log(self.probability(item_ids))

    def update_and_log_q(self, item_ids: torch.Tensor) -> torch.Tensor:
        """:meth:`update` with this batch, then :meth:`log_q` of it: the usual training-step call."""
        self.update(item_ids)
        return self.log_q(item_ids)

    def extra_repr(self) -> str:
        return f"num_buckets={self.num_buckets}, alpha={self.alpha}, step={int(self.step)}"
