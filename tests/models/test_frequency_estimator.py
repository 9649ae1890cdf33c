import pytest
import torch

from recembed.errors import ConfigError
from recembed.models import StreamingFrequencyEstimator


def test_estimates_per_step_probability():
    est = StreamingFrequencyEstimator(num_buckets=1 << 12, alpha=0.1)
    for step in range(1, 201):
        batch = [1]  # item 1: every step
        if step % 4 == 0:
            batch.append(2)  # item 2: every 4th step
        if step % 10 == 0:
            batch.append(3)
        est.update(torch.tensor(batch))
    p = est.probability(torch.tensor([1, 2, 3]))
    assert p.tolist() == pytest.approx([1.0, 0.25, 0.1], rel=1e-4)
    assert torch.allclose(est.log_q(torch.tensor([2])), torch.log(torch.tensor([0.25])))
    # never seen: gap of the whole stream so far
    assert float(est.probability(torch.tensor([999]))) == pytest.approx(1 / 200)


def test_duplicates_in_one_batch_count_once_and_first_gap_starts_the_average():
    est = StreamingFrequencyEstimator(num_buckets=1 << 12, alpha=0.5)
    est.update(torch.tensor([7]))  # step 1
    est.update(torch.tensor([8]))  # step 2
    est.update(torch.tensor([7, 7, 7]))  # step 3: gap 2, counted once
    # first sighting at step 1 -> gap 1; then 0.5 * 1 + 0.5 * 2 = 1.5
    assert float(est.probability(torch.tensor([7]))) == pytest.approx(1 / 1.5)
    assert float(est.probability(torch.tensor([8]))) == pytest.approx(1 / 2)  # first gap: 2 steps


def test_update_and_log_q_and_state_dict_round_trip():
    est = StreamingFrequencyEstimator(num_buckets=64, alpha=0.2, seed=1)
    for _ in range(5):
        log_q = est.update_and_log_q(torch.tensor([[3, 4], [5, 3]]))
    assert log_q.shape == (2, 2)
    copy = StreamingFrequencyEstimator(num_buckets=64, alpha=0.2, seed=1)
    copy.load_state_dict(est.state_dict())
    ids = torch.tensor([3, 4, 5, 6])
    assert torch.equal(copy.probability(ids), est.probability(ids))
    assert int(copy.step) == 5


def test_config_errors():
    with pytest.raises(ConfigError, match="alpha"):
        StreamingFrequencyEstimator(8, alpha=0.0)
    with pytest.raises(ConfigError, match="num_buckets"):
        StreamingFrequencyEstimator(0)
