"""Models built on the embedding tables, their losses, samplers and building blocks.

- :class:`DotProduct` - biased matrix factorisation.
- :class:`TwoTower` - user and item towers trained with an in-batch softmax (log-Q corrected).
- :class:`DLRM`, :class:`DCNv2`, :class:`DeepFM` - click models over dense and sparse features.
- :class:`MLP`, :class:`CrossNetwork`, :func:`pairwise_dot_interaction`, :func:`fm_second_order`.
- Losses (:mod:`recembed.models.losses`) and samplers (:mod:`recembed.models.sampling`).

Every model takes ``embedding_optimizer`` (default row-wise Adagrad, fused into backward)
and ``embedding_lr``; train the rest with a torch optimizer over :func:`dense_parameters`.
"""

from recembed.models.dcn import DCNv2
from recembed.models.deepfm import DeepFM
from recembed.models.dlrm import DLRM
from recembed.models.dot_product import DotProduct
from recembed.models.embedding_setup import dense_parameters, with_embedding_optimizer
from recembed.models.interactions import CrossNetwork, fm_second_order, pairwise_dot_interaction
from recembed.models.losses import binary_cross_entropy_with_logits, bpr_loss, mse_loss, sampled_softmax_loss
from recembed.models.mlp import MLP
from recembed.models.sampling import NegativeSampler, StreamingFrequencyEstimator
from recembed.models.two_tower import TwoTower, in_batch_softmax_loss

__all__ = [
    "CrossNetwork",
    "DCNv2",
    "DLRM",
    "DeepFM",
    "DotProduct",
    "MLP",
    "NegativeSampler",
    "StreamingFrequencyEstimator",
    "TwoTower",
    "binary_cross_entropy_with_logits",
    "bpr_loss",
    "dense_parameters",
    "fm_second_order",
    "in_batch_softmax_loss",
    "mse_loss",
    "pairwise_dot_interaction",
    "sampled_softmax_loss",
    "with_embedding_optimizer",
]
