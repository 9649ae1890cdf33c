"""Fixtures of the seq2vec tests."""

import pytest

from .corpora import topic_sentences


@pytest.fixture(scope="session")
def planted_corpus():
    return topic_sentences()
