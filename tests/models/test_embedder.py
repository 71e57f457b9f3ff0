import numpy as np
import pytest

from config.families import EmbedderArgs
from models.embedder import Embedder


@pytest.fixture(scope="module")
def embedder():
    return Embedder(EmbedderArgs())


def test_bundled_minilm_ranks_paraphrases_above_unrelated(embedder):
    vectors = embedder.embed(["a red sports car on a mountain road", "a crimson sports car driving up a mountain",
                              "a bowl of miso soup on a table"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert paraphrase > 0.6 and paraphrase - unrelated > 0.4


def test_embedding_does_not_depend_on_batch_mates(embedder):
    texts = ["short", "a considerably longer sentence with many more tokens in it"]
    assert np.abs(embedder.embed(texts) - np.concatenate([embedder.embed([t]) for t in texts])).max() < 1e-5


def test_tiny_source_embeds_without_weights():
    vectors = Embedder(EmbedderArgs(source="tiny")).embed(["a", "b c"])
    assert vectors.shape == (2, 32)


def test_empty_input_is_refused(embedder):
    with pytest.raises(ValueError, match="texts"):
        embedder.embed([])
