"""``recembed demo``: the main job end to end on synthetic data with a known ground truth.

1. DLRM learns click-through rates on Criteo-shaped data; its test AUC is printed beside
   the AUC of the hidden teacher that generated the clicks (the ceiling).
2. Matrix factorisation learns MovieLens-sized ratings; its test RMSE is printed beside
   the RMSE of the noise-free generator (the floor).
3. The nearest items of a few items, by cosine of the learned item vectors (ExactIndex),
   with the cosine of the hidden true factors of each neighbour.
4. Two-stage recommendation: an LSH index of the item vectors recalls candidates for a
   few users, the MF model ranks them, and the top items are shown with the rating the
   generator would expect.

Example:
    >>> summary = run_demo(quick=True)   # doctest: +SKIP
    >>> summary["dlrm"]["auc"] > 0.6      # doctest: +SKIP
    True
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, TextIO

import numpy as np
import torch

from recembed.data import make_ratings_dataset
from recembed.train.config import RunConfig
from recembed.train.loop import Trainer
from recembed.train.tasks import CTRTask, RatingTask

__all__ = ["run_demo", "DEMO_SIZES"]

#: Data and training sizes of the full demo and of ``--quick`` (a smoke test).
DEMO_SIZES = {
    "full": {"ctr_samples": 1_200_000, "ctr_cardinality": 200, "ctr_epochs": 1,
             "users": 943, "items": 1682, "ratings": 100_000, "mf_epochs": 20},
    "quick": {"ctr_samples": 4_000, "ctr_cardinality": 50, "ctr_epochs": 1,
              "users": 100, "items": 80, "ratings": 3_000, "mf_epochs": 2},
}
NUM_SPARSE, NUM_DENSE = 26, 13
#: Issue #4's quality target: DLRM's test AUC within this of the teacher's.
AUC_GAP_TARGET = 0.01


def _ctr_config(sizes: dict, out: Path, threads: int) -> RunConfig:
    # One pass keeps the demo short. Plain DLRM lands at AUC 0.791-0.793 at this length whatever
    # the data size (1.2M or 2.4M), embedding dim (4-32), optimizers or learning rates: its top
    # MLP is slow to learn the teacher's sum over all feature-pair dots. interaction_sum adds
    # that sum to the logit; with it 3 epochs reach the target (examples/synthetic_ctr.toml).
    return RunConfig.from_dict({
        "data": {"test_fraction": 0.1, "val_fraction": 0.02,
                 "synthetic": {"num_samples": sizes["ctr_samples"], "num_sparse": NUM_SPARSE, "num_dense": NUM_DENSE,
                               "max_cardinality": sizes["ctr_cardinality"]}},
        "model": {"kind": "dlrm", "embedding_dim": 8, "bottom_mlp": [64], "top_mlp": [64, 32],
                  "interaction_sum": True, "embedding_optimizer": "adagrad", "embedding_lr": 0.05},
        "train": {"task": "ctr", "epochs": sizes["ctr_epochs"], "batch_size": 1024, "dense_lr": 0.01,
                  "threads": threads, "out_dir": str(out / "dlrm"), "plot": False},
    })


def _mf_config(sizes: dict, out: Path, threads: int) -> RunConfig:
    return RunConfig.from_dict({
        "data": {"val_fraction": 0.05, "synthetic": {"num_users": sizes["users"], "num_items": sizes["items"],
                                                     "num_ratings": sizes["ratings"], "noise": 0.5}},
        "model": {"kind": "dot_product", "embedding_dim": 32, "embedding_optimizer": "adagrad",
                  "embedding_lr": 0.1, "embedding_weight_decay": 0.001},
        "train": {"task": "rating", "epochs": sizes["mf_epochs"], "batch_size": 512, "threads": threads,
                  "out_dir": str(out / "mf"), "plot": False},
    })


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _cosine(rows: np.ndarray, row: np.ndarray) -> np.ndarray:
    return rows @ row / (np.linalg.norm(rows, axis=1) * np.linalg.norm(row) + 1e-12)


def run_demo(quick: bool = False, out_dir: Optional[str | Path] = None, threads: int = 0,
             file: Optional[TextIO] = None) -> dict:
    """Run the demo, print its summary to ``file`` (standard output), return the numbers.

    Args:
        quick: tiny sizes (seconds), for smoke tests; the numbers then mean little.
        out_dir: keep the two runs' files (checkpoints, metrics) here; a temporary folder
            is used and removed otherwise.
        threads: torch/numba threads (0: cores - 1, at least 1, at most 4).
    """
    out = file if file is not None else sys.stdout
    sizes = DEMO_SIZES["quick" if quick else "full"]
    with tempfile.TemporaryDirectory(prefix="recembed-demo-") as scratch:
        folder = Path(out_dir) if out_dir is not None else Path(scratch)
        started = time.perf_counter()
        summary = {"dlrm": _click_model(sizes, folder, threads, out)}
        summary.update(_ratings_model(sizes, folder, threads, out))
        summary["seconds"] = time.perf_counter() - started
    _print_summary(summary, out)
    return summary


def _print_summary(summary: dict, out: TextIO) -> None:
    d, m, n, t = summary["dlrm"], summary["mf"], summary["nearest"], summary["two_stage"]
    _say(out, "\n== summary")
    gap = d["teacher_auc"] - d["auc"]
    verdict = "met" if gap <= AUC_GAP_TARGET else "NOT met"
    _say(out, f"   DLRM   test AUC {d['auc']:.4f}  vs teacher ceiling {d['teacher_auc']:.4f}  "
              f"(gap {gap:.4f}; target gap <= {AUC_GAP_TARGET}: {verdict})")
    if gap > AUC_GAP_TARGET:
        _say(out, "          one short epoch here; the 3-epoch run is `recembed train examples/synthetic_ctr.toml "
                  "--model.kind dlrm --model.interaction_sum true`")
    _say(out, f"   MF     test RMSE {m['rmse']:.4f}  (mean predictor {m['mean_rmse']:.4f}, "
              f"noise-free generator {m['generator_rmse']:.4f})")
    _say(out, f"   items  learned neighbours' true cosine {n['mean_true_cosine']:+.2f}  "
              f"(random pairs {n['random_true_cosine']:+.2f})")
    _say(out, f"   recs   expected rating of the top picks {t['picked']:.2f}  (user's best possible {t['ideal']:.2f}, "
              f"random unseen item {t['random']:.2f})")
    _say(out, f"   demo finished in {summary['seconds']:.0f} s")


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


def _click_model(sizes: dict, folder: Path, threads: int, out: TextIO) -> dict:
    _say(out, f"== 1. DLRM on synthetic click logs ({sizes['ctr_samples']:,} examples, {NUM_SPARSE} categorical "
              f"+ {NUM_DENSE} dense features, clicks drawn from a hidden teacher model)")
    config = _ctr_config(sizes, folder, threads)
    task = CTRTask(config)
    task.load_data()
    result = Trainer(config, task=task, log=out).fit()
    auc, teacher = result.metrics["auc"], result.metrics["teacher_auc"]
    _say(out, f"   DLRM test AUC {auc:.4f}   teacher AUC (ceiling) {teacher:.4f}   gap {teacher - auc:.4f}   "
              f"log loss {result.metrics['log_loss']:.4f}")
    return {"auc": auc, "teacher_auc": teacher, "log_loss": result.metrics["log_loss"]}


def _ratings_model(sizes: dict, folder: Path, threads: int, out: TextIO) -> dict:
    _say(out, f"\n== 2. Matrix factorisation on synthetic ratings ({sizes['ratings']:,} ratings, {sizes['users']} "
              f"users, {sizes['items']} items, 1-5 stars from hidden factors + noise)")
    config = _mf_config(sizes, folder, threads)
    task = RatingTask(config)
    task.load_data()
    result = Trainer(config, task=task, log=out).fit()
    s = config.data.synthetic
    truth = make_ratings_dataset(s.num_users, s.num_items, s.num_ratings, rank=s.rank, noise=s.noise, seed=s.seed)
    test = task.test
    floor = _rmse(np.clip(truth.expected_ratings(test.user_rows, test.item_rows), 1, 5), test.ratings)
    rmse = result.metrics["rmse"]
    _say(out, f"   MF test RMSE {rmse:.4f}   (predicting the mean: {_rmse(task.global_mean, test.ratings):.4f}; "
              f"the noise-free generator: {floor:.4f})")
    model = result.model
    neighbours = _nearest_items(model, truth, task, out)
    picks = _two_stage(model, truth, task, out)
    return {"mf": {"rmse": rmse, "mae": result.metrics["mae"], "generator_rmse": floor,
                   "mean_rmse": _rmse(task.global_mean, test.ratings)},
            "nearest": neighbours, "two_stage": picks}


def _nearest_items(model, truth, task, out: TextIO, count: int = 3, k: int = 5) -> dict:
    from recembed.retrieval import ExactIndex

    _say(out, "\n== 3. nearest items by cosine of the learned item vectors (ExactIndex); in brackets the cosine "
              "of the hidden true factors")
    vectors = model.item_vectors()
    index = ExactIndex(metric="cosine").build(vectors)
    counts = np.bincount(task.train.item_rows, minlength=vectors.shape[0])
    queries = np.argsort(-counts, kind="stable")[:count]  # popular items: well-estimated vectors
    _, ids = index.search(vectors[torch.from_numpy(queries)], k + 1, exclude=[[int(q)] for q in queries])
    found, true_cosines = {}, []
    raw = task.events.item_ids
    for query, row in zip(queries, ids.tolist()):
        row = [r for r in row if r >= 0][:k]
        cos = _cosine(truth.item_factors[row], truth.item_factors[query])
        true_cosines.extend(cos.tolist())
        shown = ", ".join(f"{raw[r]} ({c:+.2f})" for r, c in zip(row, cos))
        _say(out, f"   item {raw[query]}: {shown}")
        found[str(raw[query])] = [str(raw[r]) for r in row]
    sample = np.random.default_rng(0).integers(0, vectors.shape[0], (200, 2))
    baseline = float(np.mean([_cosine(truth.item_factors[[a]], truth.item_factors[b])[0] for a, b in sample]))
    _say(out, f"   mean true cosine of these neighbours {np.mean(true_cosines):+.2f} (random pairs {baseline:+.2f})")
    return {"neighbours": found, "mean_true_cosine": float(np.mean(true_cosines)), "random_true_cosine": baseline}


def _two_stage(model, truth, task, out: TextIO, users: int = 3, recall: int = 50, top: int = 5) -> dict:
    from recembed.retrieval import LSHIndex

    _say(out, f"\n== 4. two-stage recommendation: recall {recall} candidates per user from an LSH index of the item "
              f"vectors, rank them with the MF model")
    items = model.item_vectors()
    index = LSHIndex(metric="cosine", num_tables=8, num_bits=8, num_probes=8, seed=0).build(items)
    seen = [task.train.item_rows[task.train.user_rows == u].tolist() for u in range(users)]
    user_vectors = model.user_vectors()[:users]
    _, candidates = index.search(user_vectors, min(recall, items.shape[0] - max(map(len, seen))), exclude=seen)
    raw, picks, means = task.events.item_ids, {}, {"picked": [], "ideal": [], "random": []}
    for user in range(users):
        cand = candidates[user][candidates[user] >= 0]
        with torch.no_grad():
            scores = model.score_items(torch.tensor([user]), cand)[0]
        order = torch.argsort(scores, descending=True)[:top]
        best = cand[order].numpy()
        expected = np.clip(truth.expected_ratings(np.full(len(best), user), best), 1, 5)
        unseen = np.setdiff1d(np.arange(items.shape[0]), seen[user])
        unseen_expected = np.clip(truth.expected_ratings(np.full(len(unseen), user), unseen), 1, 5)
        ideal = np.sort(unseen_expected)[::-1][:top]
        shown = ", ".join(f"{raw[i]} ({p:.1f}*)" for i, p in zip(best, scores[order].tolist()))
        _say(out, f"   user {task.events.user_ids[user]}: {shown}")
        _say(out, f"      expected rating of these {expected.mean():.2f}; of the user's true best {top} unseen items "
                  f"{ideal.mean():.2f}; of a random unseen item {unseen_expected.mean():.2f}")
        picks[str(task.events.user_ids[user])] = [str(raw[i]) for i in best]
        for key, values in (("picked", expected), ("ideal", ideal), ("random", unseen_expected)):
            means[key].append(float(values.mean()))
    return {"picks": picks, **{key: float(np.mean(v)) for key, v in means.items()}}
