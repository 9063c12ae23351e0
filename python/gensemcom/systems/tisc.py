"""TISC: textual-inversion semantic communication (Kim, Lee, Hong, Lee, 2025).

Transmitter (:meth:`TISC.encode`):

1. **BLIP caption** of the image.
2. **Attention-guided token selection**: the caption word with the highest
   attention score becomes the learnable placeholder ``<*>``
   (:func:`select_token` is the pure rule; :func:`sd_token_attention` computes the
   scores). We use **Stable Diffusion's cross-attention per prompt token**: the
   caption, tokenised by SD's CLIP tokenizer, conditions one UNet pass on the image's
   VAE latent noised at a few timesteps; every cross-attention layer's softmax over
   the prompt tokens is averaged over heads, query pixels, layers and timesteps.
   Why SD's and not BLIP's: SD's softmax runs over the *tokens* for every pixel, so
   the per-token mean over pixels is the share of the image the token drives in the
   very model that will reconstruct it, and scores of different tokens are directly
   comparable. BLIP's text-decoder cross-attention normalises over *image patches*
   for each token, so its average over patches is the same constant for every token
   and a per-token score needs an arbitrary reduction (peak, entropy); it also
   scores BLIP's WordPiece tokens, which must then be aligned with the CLIP tokens we
   send. A word split into several CLIP tokens scores the maximum over its pieces.
3. **Noise-robust textual inversion** (:func:`textual_inversion`): only the
   placeholder's embedding ``v`` is optimised (UNet, VAE and text encoder frozen,
   ``requires_grad=False``; ``v`` enters through a forward hook on the token
   embedding layer, so no frozen weight changes), initialised from the replaced
   word's embedding, with
   ``L_robust = E ||eps - eps_theta(x_t, t, c(v + delta))||^2``,
   ``delta ~ N(0, sigma^2 I)`` and ``sigma^2 = P_v / 10^(SNR_train/10)``, ``P_v`` the
   mean squared element of ``v`` (:func:`sigma_from_snr`): the per-element SNR of
   the analog path under the link's Es/N0 convention. The slides find
   SNR_train = -5 dB best across channel SNRs (the default).

Frame: the **digital part** holds SD-tokenizer IDs of the caption with the selected
word removed, two bytes each (uint16, little-endian; uint32 only for vocabularies
over 65,536); the header holds the placeholder's position ``pos``, the id dtype
``dt``, the embedding's norm ``norm``, the generation ``seed`` and the original image
``size``. The **analog part** is ``v / ||v||`` (unit norm; 768 values for SD 1.5,
i.e. 384 complex channel uses; zero-padded to an even length if ever odd).

Channel uses (reported by :class:`gensemcom.systems.link.FrameLink`): with the
link's defaults (16-QAM, rate-1/2 LDPC) a caption of up to ~25 CLIP tokens and the
header (~95-120 bytes in all) fit one code block, so an image costs 576 digital +
384 analog = 960 complex channel uses with SD 1.5, whatever its size.

Receiver (:meth:`TISC.decode`): de-normalise the received embedding (times
``norm``), inject it as ``<*>``'s row of the text encoder's token-embedding table
(the token is added to SD's tokenizer when the system is built), and generate from
the hybrid prompt (caption with ``<*>``) with a seeded latent.

CRC failure (constructor option ``on_crc_fail``): ``"lost"`` (default) returns None;
``"embedding-only"`` generates from the prompt ``<*>`` alone with the received
analog symbols. The norm is then unknown (it travelled in the lost header) and so is
the link's analog scale, so the receiver uses the norm the system expects: the
received vector is brought to unit norm by the known symbol power (unit average
complex-symbol power over ``D/2`` symbols: multiply by ``sqrt(2/D)``) and scaled to
the **mean L2 norm of the rows of SD's token-embedding table**
(:attr:`TISC.expected_norm`, overridable with ``fallback_norm``); the seed and output
size are the receiver's defaults (``seed``, ``resolution`` x ``resolution``).

Cost: on a GPU, the full profile's textual inversion (SD 1.5, 512 x 512, 500 steps)
takes a few minutes per image. **On a CPU it takes hours per image** (each step is a
UNet forward and backward pass at 64 x 64 latents); use a GPU, or fewer steps and a
lower ``resolution``. A tqdm bar shows the steps and the loss. The ``tiny`` profile
(random models of :mod:`gensemcom.models.tiny_hf`, 32 x 32, 3 steps) runs in about a
second and exists for tests.

The ``embedded`` profile (:mod:`gensemcom.models.tisc_embedded`) keeps this link
with small models the team trained on the shared training sets and ships: a Show,
Attend and Tell captioner (word vocabulary; its ids are the digital part), the
placeholder chosen by the captioner's visual gate ``beta`` per word, textual
inversion of a 512-d ``v`` against a frozen conditional decoder ``G(v, c)`` with the
same noise-robust loss on pixels, and ``G`` at the receiver (64 x 64, resized to the
sent size). 512 analog values = 256 complex channel uses. It runs offline on a CPU
in seconds; it is not a diffusion model and its images are blurry thumbnails.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..frame import SemanticFrame
from ._caption_diffusion import CaptionDiffusionSystem
from .base import LinkContext, as_image, register_system

PLACEHOLDER = "<*>"
ON_CRC_FAIL = ("lost", "embedding-only")

#: words never chosen as the placeholder (function words carry no visual identity)
STOPWORDS = frozenset("""
a an the of on in at to for with without from by into onto over under near next and or but is are was were be
been being it its this that these those there here some two three four one his her their they he she we you i
my your our as up down out off very while who which what where when top front back side behind beside
""".split())

#: special tokens of the CLIP and BERT tokenizers, never selectable
SPECIAL_TOKENS = frozenset(["<|startoftext|>", "<|endoftext|>", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]",
                            "[DEC]", "<s>", "</s>", "<pad>", "<unk>", PLACEHOLDER])

#: defaults of the embedded profile (models of :mod:`gensemcom.models.tisc_embedded`)
EMBEDDED_DEFAULTS = dict(ti_steps=100, lr=0.5, caption_max_tokens=16)

PROFILES = {
    "full": dict(resolution=512, ti_steps=500, gen_steps=50, guidance=7.5, caption_max_tokens=30, num_beams=3),
    "tiny": dict(resolution=32, ti_steps=3, gen_steps=2, guidance=2.0, caption_max_tokens=8, num_beams=1),
}



def hf_lock():
    """The lock guarding the shared SD pipeline (:data:`gensemcom.models.hf.PIPE_LOCK`)."""
    from ..models.hf import PIPE_LOCK

    return PIPE_LOCK


# ---------------------------------------------------------------- selection
def _norm_token(tok: str) -> str:
    return str(tok).replace("</w>", "").replace("##", "").strip().lower()


def select_token(tokens: Sequence[str], scores: Sequence[float], exclude: Iterable[str] = STOPWORDS) -> int:
    """Index of the token to replace by the placeholder: the highest score wins.

    Tokens are compared lower-cased with CLIP's ``</w>`` and WordPiece's ``##``
    stripped. Special tokens (:data:`SPECIAL_TOKENS`), tokens in ``exclude`` and
    tokens without a letter or digit (punctuation) are never chosen, nor are NaN
    scores. Ties go to the earliest token.

    Args:
        tokens (Sequence[str]): the caption's tokens (or words).
        scores (Sequence[float]): one attention score per token.
        exclude (Iterable[str]): words never chosen (default :data:`STOPWORDS`).

    Returns:
        int: the index into ``tokens``.

    Raises:
        ValueError: on a length mismatch, or when no token is eligible.
    """
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    excl = {_norm_token(w) for w in exclude}
    special = {_norm_token(w) for w in SPECIAL_TOKENS}
    best, best_score = -1, -math.inf
    for i, (tok, s) in enumerate(zip(tokens, scores)):
        raw, w = str(tok).strip(), _norm_token(tok)
        s = float(s)
        if raw in SPECIAL_TOKENS or w in special or w in excl or not any(c.isalnum() for c in w) or math.isnan(s):
            continue
        if s > best_score:
            best, best_score = i, s
    if best < 0:
        raise ValueError("no eligible token: every token is a stopword, special token or punctuation")
    return best


def words_of(tokenizer, ids: Sequence[int]) -> List[Tuple[str, List[int]]]:
    """Group CLIP token ``ids`` into words: [(word, [positions])]; a word ends with a
    token ending in ``</w>`` (CLIP marks word ends; punctuation is its own word)."""
    toks = tokenizer.convert_ids_to_tokens(list(ids))
    words, cur = [], []
    for i, t in enumerate(toks):
        cur.append(i)
        if str(t).endswith("</w>") or i == len(toks) - 1:
            text = tokenizer.decode([int(ids[j]) for j in cur]).strip()
            words.append((text, cur))
            cur = []
    return words


class _CrossAttnRecorder:
    """Attention processor recording, for every cross-attention call, the softmax over
    the prompt tokens averaged over heads and query pixels (self-attention runs the
    default processor)."""

    def __init__(self):
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        self.eager = AttnProcessor()
        self.fast = AttnProcessor2_0()
        self.maps: List = []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if encoder_hidden_states is None:
            return self.fast(attn, hidden_states, None, attention_mask, temb)
        orig = attn.get_attention_scores

        def record(q, k, mask=None):
            p = orig(q, k, mask)  # (batch * heads, pixels, tokens)
            self.maps.append(p.detach().float().mean(dim=(0, 1)).cpu())
            return p

        attn.get_attention_scores = record
        try:
            return self.eager(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        finally:
            del attn.get_attention_scores


def sd_token_attention(pipe, latents, ids: Sequence[int], timesteps: Sequence[float] = (0.3, 0.5, 0.7),
                       seed: int = 0) -> np.ndarray:
    """Per-token cross-attention scores of SD for the prompt ``ids`` (no BOS/EOS).

    The image latent is noised at the given fractions of the training schedule (fixed
    noise from ``seed``); one UNet pass per timestep records every cross-attention
    layer; each layer's attention probabilities (softmax over the 77 prompt
    positions) are averaged over heads and pixels, then over layers and timesteps.

    Returns:
        np.ndarray: float64 scores, one per entry of ``ids`` (position ``i + 1`` of
        the padded prompt, after BOS).
    """
    import torch

    from ..models.hf import encode_ids

    ids = list(ids)
    if not ids:
        return np.zeros(0)
    unet = pipe.unet
    cond = encode_ids(pipe, ids)
    sched = _train_scheduler(pipe)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    noise = torch.randn(latents.shape, generator=gen).to(latents.device, latents.dtype)
    n_train = sched.config.num_train_timesteps
    rec = _CrossAttnRecorder()
    orig = dict(unet.attn_processors)
    unet.set_attn_processor(rec)
    try:
        with torch.no_grad():
            for f in timesteps:
                t = torch.tensor([int(round(float(f) * (n_train - 1)))], device=latents.device)
                unet(sched.add_noise(latents, noise, t), t, encoder_hidden_states=cond)
    finally:
        unet.set_attn_processor(dict(orig))
    if not rec.maps:
        raise RuntimeError("the UNet has no cross-attention layers to score tokens with")
    mean = torch.stack(rec.maps).mean(0).numpy().astype(np.float64)
    return mean[1: 1 + len(ids)]


# ---------------------------------------------------------------- textual inversion
def sigma_from_snr(v, snr_db: Optional[float]) -> float:
    """Std of the robust-TI noise: ``sqrt(P_v / 10^(snr_db/10))``, ``P_v = mean(v^2)``,
    so that ``10 log10(P_v / sigma^2) = snr_db``; 0 when ``snr_db`` is None (plain TI)."""
    if snr_db is None:
        return 0.0
    v = np.asarray(v.detach().float().cpu() if hasattr(v, "detach") else v, dtype=np.float64)
    p = float(np.mean(v ** 2))
    return math.sqrt(p / 10.0 ** (float(snr_db) / 10.0))


def _train_scheduler(pipe):
    from diffusers import DDPMScheduler

    cached = getattr(pipe, "_gensemcom_ddpm", None)
    if cached is None:
        cached = DDPMScheduler.from_config(pipe.scheduler.config)
        pipe._gensemcom_ddpm = cached
    return cached


@contextlib.contextmanager
def inject_embedding(pipe, token_id: int, vector_fn):
    """Within the context, the text encoder's token-embedding layer outputs
    ``vector_fn()`` (a (D,) tensor, may require grad) wherever the input is ``token_id``;
    no weight is changed."""
    import torch

    layer = pipe.text_encoder.get_input_embeddings()

    def hook(_module, inputs, output):
        mask = (inputs[0] == token_id).unsqueeze(-1)
        if not bool(mask.any()):
            return output
        vec = vector_fn().to(output.dtype).view(1, 1, -1).expand_as(output)
        return torch.where(mask, vec, output)

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def image_latents(pipe, image: np.ndarray, resolution: int):
    """VAE latent (mean, times the scaling factor) of the image resized to a square."""
    import torch
    from PIL import Image

    img = np.asarray(Image.fromarray(as_image(image)).resize((resolution, resolution), Image.BICUBIC))
    x = torch.from_numpy(img.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0)
    x = x.to(pipe.vae.device, pipe.vae.dtype)
    with torch.no_grad():
        lat = pipe.vae.encode(x).latent_dist.mean
    return lat * pipe.vae.config.scaling_factor


def textual_inversion(pipe, latents, prompt: Sequence[int], token_id: int, init, steps: int = 500,
                      lr: float = 5e-3, train_snr_db: Optional[float] = -5.0, seed: int = 0,
                      progress: bool = True) -> Tuple[np.ndarray, List[float]]:
    """Noise-robust textual inversion of one embedding.

    Minimises ``||eps - eps_theta(x_t, t, c(v + delta))||^2`` over ``v`` alone with
    AdamW, ``delta ~ N(0, sigma^2 I)`` drawn afresh every step with ``sigma`` from
    :func:`sigma_from_snr` of the current ``v`` (``train_snr_db=None``: no noise, the
    original TI loss). Timesteps are uniform over the training schedule; the target
    is ``eps`` (or the velocity for v-prediction models). Every frozen weight stays
    bit-identical.

    Args:
        pipe: StableDiffusionPipeline (weights frozen).
        latents: the image's VAE latent (1, 4, h, w).
        prompt (Sequence[int]): CLIP token ids (no BOS/EOS) containing ``token_id``.
        token_id (int): the placeholder's id.
        init: initial embedding (D,).
        steps, lr, seed: optimisation settings.
        train_snr_db (float | None): training SNR of the robust loss (dB).
        progress (bool): show a tqdm bar with the loss.

    Returns:
        tuple[np.ndarray, list[float]]: the learned embedding (float32, (D,)) and the
        loss of every step.
    """
    import torch
    from tqdm.auto import tqdm

    if token_id not in list(prompt):
        raise ValueError("the prompt does not contain the placeholder token")
    device = pipe.unet.device
    sched = _train_scheduler(pipe)
    n_train = sched.config.num_train_timesteps
    v = torch.nn.Parameter(torch.as_tensor(np.asarray(init, np.float32)).clone().to(device))
    opt = torch.optim.AdamW([v], lr=float(lr), weight_decay=0.0)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    state: Dict[str, object] = {}
    losses: List[float] = []
    bar = tqdm(range(int(steps)), desc="TISC textual inversion", disable=not progress, leave=False)
    with inject_embedding(pipe, token_id, lambda: v + state["delta"]):
        for _ in bar:
            noise = torch.randn(latents.shape, generator=gen).to(device, latents.dtype)
            t = torch.randint(0, n_train, (1,), generator=gen).to(device)
            sigma = sigma_from_snr(v, train_snr_db)
            state["delta"] = (torch.randn(v.shape, generator=gen) * sigma).to(device)
            x_t = sched.add_noise(latents, noise, t)
            cond = _encode_with_grad(pipe, prompt)
            pred = pipe.unet(x_t, t, encoder_hidden_states=cond).sample
            target = sched.get_velocity(latents, noise, t) if sched.config.prediction_type == "v_prediction" \
                else noise
            loss = torch.nn.functional.mse_loss(pred.float(), target.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return v.detach().float().cpu().numpy(), losses


def _encode_with_grad(pipe, ids: Sequence[int]):
    """Like :func:`gensemcom.models.hf.encode_ids`, with autograd on (for TI)."""
    import torch

    tok = pipe.tokenizer
    n = tok.model_max_length
    seq = [tok.bos_token_id] + [int(i) for i in ids][: n - 2] + [tok.eos_token_id]
    seq += [tok.pad_token_id] * (n - len(seq))
    return pipe.text_encoder(torch.tensor([seq], device=pipe.text_encoder.device))[0]


def add_placeholder(pipe, token: str = PLACEHOLDER) -> int:
    """Add ``token`` to SD's tokenizer (once) and grow the text encoder's embedding
    table to match; returns its id."""
    import torch

    tok = pipe.tokenizer
    if token not in tok.get_vocab():
        tok.add_tokens([token])
    tid = tok.convert_tokens_to_ids(token)
    emb = pipe.text_encoder.get_input_embeddings()
    if emb.num_embeddings <= tid:
        pipe.text_encoder.resize_token_embeddings(len(tok), mean_resizing=False)
        emb = pipe.text_encoder.get_input_embeddings()
        with torch.no_grad():  # a neutral start: the mean of the original rows
            emb.weight[tid] = emb.weight[:tid].mean(0)
        emb.weight.requires_grad_(False)
    return int(tid)


# ---------------------------------------------------------------- the system
@register_system("tisc")
class TISC(CaptionDiffusionSystem):
    """TISC transmitter and receiver over a hybrid digital (caption ids) + analog
    (placeholder embedding) frame.

    Args:
        profile (str): ``"full"`` (BLIP base + SD 1.5, see :mod:`gensemcom.models.hf`),
            ``"embedded"`` (the shipped small captioner and decoder of
            :mod:`gensemcom.models.tisc_embedded`, CPU, offline) or ``"tiny"``
            (random tiny models for tests).
        device (str | None): torch device (default CUDA when available).
        blip (str | None), sd (str | None): model ids or local directories overriding
            the profile's (full: ``$GENSEMCOM_BLIP`` / ``$GENSEMCOM_SD`` or defaults).
        dtype: torch dtype (default float16 on CUDA, float32 on CPU).
        on_crc_fail (str): ``"lost"`` (decode returns None) or ``"embedding-only"``.
        ti_steps (int), lr (float), train_snr_db (float | None), resolution (int),
            seed (int): textual inversion settings (profile defaults: full 500 steps
            at 512 px, tiny 3 steps at 32 px, lr 5e-3; embedded 100 steps at 64 px, lr
            0.5; -5 dB; seed 0). The seed also seeds generation (sent in the header).
        gen_steps (int), guidance (float): denoising steps and classifier-free
            guidance scale of the receiver.
        caption_max_tokens (int), num_beams (int): BLIP captioning settings.
        fallback_norm (float | None): embedding norm for ``"embedding-only"``
            decoding (default :attr:`expected_norm`).
        progress (bool): show the textual-inversion progress bar.
        threads (int | None): torch CPU threads, set again before every encode and
            decode (the PHY's numba/OpenMP code may change torch's setting).
        weights (str | None): the embedded profile's bundle (default: the shipped
            ``models/weights/tisc_embedded.pt``).

    Raises:
        ValueError: unknown profile or ``on_crc_fail``.
        FileNotFoundError: the embedded bundle is missing.
        gensemcom.models.hf.ModelNotAvailable: a model that cannot be loaded.
    """

    def __init__(self, profile: str = "full", device: Optional[str] = None, blip: Optional[str] = None,
                 sd: Optional[str] = None, dtype=None, on_crc_fail: str = "lost", ti_steps: Optional[int] = None,
                 lr: Optional[float] = None, train_snr_db: Optional[float] = -5.0, resolution: Optional[int] = None,
                 seed: int = 0, gen_steps: Optional[int] = None, guidance: Optional[float] = None,
                 caption_max_tokens: Optional[int] = None, num_beams: Optional[int] = None,
                 fallback_norm: Optional[float] = None, progress: bool = True, threads: Optional[int] = None,
                 weights: Optional[str] = None):
        if on_crc_fail not in ON_CRC_FAIL:
            raise ValueError(f"on_crc_fail must be one of {ON_CRC_FAIL}, got {on_crc_fail!r}")
        self.on_crc_fail = on_crc_fail
        self.bundle = None
        if profile == "embedded":
            self._setup_embedded(weights, ti_steps, lr, train_snr_db, seed, caption_max_tokens, fallback_norm,
                                 progress, threads)
            return
        d = self._setup_models(PROFILES, profile, device, blip, sd, dtype, resolution, gen_steps, guidance, seed,
                               caption_max_tokens, num_beams, threads)
        self.ti_steps = int(d["ti_steps"] if ti_steps is None else ti_steps)
        self.lr = float(5e-3 if lr is None else lr)
        self.train_snr_db = None if train_snr_db is None else float(train_snr_db)
        self.progress = bool(progress)
        with hf_lock():
            self.token_id = add_placeholder(self.pipe)
        self.vocab_size = len(self.pipe.tokenizer)  # ids a received caption may hold
        table = self.pipe.text_encoder.get_input_embeddings().weight
        self.dim = int(table.shape[1])
        #: the mean L2 norm of SD's token embeddings: the scale assumed when the header is lost
        norms = table.detach().float().norm(dim=1)
        keep = np.ones(norms.numel(), bool)
        keep[self.token_id] = False  # the placeholder's own row is not a learned token
        self.expected_norm = float(fallback_norm) if fallback_norm else float(norms.cpu().numpy()[keep].mean())

    def _setup_embedded(self, weights, ti_steps, lr, train_snr_db, seed, caption_max_tokens, fallback_norm,
                        progress, threads) -> None:
        """The ``embedded`` profile: the shipped bundle of :mod:`gensemcom.models.tisc_embedded`."""
        from ..models.tisc_embedded import PLACEHOLDER_ID, EmbeddedTISC

        d = EMBEDDED_DEFAULTS  # small models: always on the CPU, whatever the worker's device
        self.profile, self.device = "embedded", "cpu"
        self.threads = int(threads) if threads else None
        self._apply_threads()
        self.bundle = EmbeddedTISC.load(weights)
        self.resolution = self.bundle.res
        self.seed = int(seed)
        self.ti_steps = int(d["ti_steps"] if ti_steps is None else ti_steps)
        self.lr = float(d["lr"] if lr is None else lr)
        self.train_snr_db = None if train_snr_db is None else float(train_snr_db)
        self.caption_max_tokens = int(d["caption_max_tokens"] if caption_max_tokens is None else caption_max_tokens)
        self.progress = bool(progress)
        self.token_id = PLACEHOLDER_ID
        self.dim = self.bundle.dim
        self.vocab_size = len(self.bundle.vocab)
        #: the mean norm of v over the decoder's validation images: the scale assumed when the header is lost
        self.expected_norm = float(fallback_norm) if fallback_norm else \
            float(self.bundle.record.get("expected_norm") or math.sqrt(self.dim))

    def _prepare_embedded(self, img: np.ndarray) -> dict:
        """Embedded transmitter front end: caption, gate-scored selection, E(x)."""
        b = self.bundle
        t0 = time.perf_counter()
        ids, betas = b.caption(img, self.caption_max_tokens)
        t1 = time.perf_counter()
        words = b.vocab.tokens(ids)
        try:
            k = select_token(words, betas) if ids else None
        except ValueError:
            k = None
        if k is None:
            word, pos, kept = None, len(ids), list(ids)
        else:
            word, pos, kept = words[k], k, ids[:k] + ids[k + 1:]
        init = b.init_embedding(img)
        return {"caption": b.vocab.decode(ids), "ids": ids, "word": word, "kept": kept, "pos": int(pos),
                "init": init, "scores": [float(x) for x in betas], "words": words,
                "caption_ms": (t1 - t0) * 1e3, "select_ms": (time.perf_counter() - t1) * 1e3}

    def _invert(self, img: np.ndarray):
        """Everything the transmitter computes: (prepare's dict, v, losses)."""
        if self.bundle is not None:
            from ..models.tisc_embedded import invert

            p = self._prepare_embedded(img)
            v, losses = invert(self.bundle, img, p["kept"], p["init"], self.ti_steps, self.lr, self.train_snr_db,
                               seed=self.seed, progress=self.progress)
            return p, v, losses
        with hf_lock():
            p = self.prepare(img)
            prompt = p["kept"][: p["pos"]] + [self.token_id] + p["kept"][p["pos"]:]
            v, losses = textual_inversion(self.pipe, p["latents"], prompt, self.token_id, p["init"],
                                          self.ti_steps, self.lr, self.train_snr_db, self.seed, self.progress)
        return p, v, losses

    # ------------------------------------------------------------ transmitter
    def prepare(self, image: np.ndarray):
        """Caption, token selection and initial embedding (everything before TI).

        Returns:
            dict: ``caption``, ``ids`` (caption ids), ``word`` (selected, or None),
            ``kept`` (ids without the word), ``pos``, ``init`` (D,), ``scores`` (per
            word), ``latents``.
        """
        import torch

        from ..models.hf import prompt_ids

        img = as_image(image)
        t0 = time.perf_counter()
        text = self.caption(img)
        t1 = time.perf_counter()
        ids = prompt_ids(self.pipe.tokenizer, text)[: self.pipe.tokenizer.model_max_length - 3]  # room for <*>
        latents = image_latents(self.pipe, img, self.resolution)
        words = words_of(self.pipe.tokenizer, ids) if ids else []
        table = self.pipe.text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            tok_scores = sd_token_attention(self.pipe, latents, ids, seed=self.seed) if ids else np.zeros(0)
            word_scores = [float(max(tok_scores[j] for j in pos)) for _, pos in words]
            try:
                k = select_token([w for w, _ in words], word_scores)
            except ValueError:  # nothing but stopwords: append <*> and start from the caption's mean
                k = None
            if k is None:
                word, pos, kept = None, len(ids), list(ids)
                init = (table[ids].float().mean(0) if ids else table[: self.token_id].float().mean(0))
            else:
                word, span = words[k][0], words[k][1]
                pos, kept = span[0], [t for j, t in enumerate(ids) if j not in set(span)]
                init = table[[ids[j] for j in span]].float().mean(0)
        return {"caption": text, "ids": ids, "word": word, "kept": kept, "pos": int(pos),
                "init": init.cpu().numpy(), "scores": word_scores, "words": [w for w, _ in words],
                "latents": latents, "caption_ms": (t1 - t0) * 1e3, "select_ms": (time.perf_counter() - t1) * 1e3}

    def encode(self, image: np.ndarray, ctx: Optional[LinkContext] = None) -> SemanticFrame:
        """Image -> frame: caption ids (placeholder removed) digital, unit-norm ``v`` analog."""
        self._apply_threads()
        from ..models.hf import pack_ids

        img = as_image(image)
        t0 = time.perf_counter()
        p, v, losses = self._invert(img)
        inversion_ms = (time.perf_counter() - t0) * 1e3 - p["caption_ms"] - p["select_ms"]
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm == 0.0:
            raise RuntimeError("textual inversion produced a zero or non-finite embedding")
        analog = (v / norm).astype(np.float32)
        if analog.size % 2:
            analog = np.concatenate([analog, np.zeros(1, np.float32)])
        digital, dt = pack_ids(p["kept"])
        header = {"pos": p["pos"], "dt": dt, "norm": norm, "seed": self.seed,
                  "size": [int(img.shape[0]), int(img.shape[1])]}
        meta = {"caption": p["caption"], "word": p["word"], "ti_loss_first": losses[0] if losses else None,
                "ti_loss_last": losses[-1] if losses else None, "ti_steps": len(losses),
                "prompt": self.prompt_text(p["kept"], p["pos"]),
                "caption_ms": p["caption_ms"], "select_ms": p["select_ms"], "inversion_ms": inversion_ms}
        return SemanticFrame(self.name, digital, analog, header, meta)

    def prompt_text(self, kept: Sequence[int], pos: int) -> str:
        """The hybrid prompt as text: the caption ids ``kept`` with ``<*>`` at ``pos``."""
        if self.bundle is not None:
            left, right = self.bundle.vocab.decode(kept[:pos]), self.bundle.vocab.decode(kept[pos:])
        else:
            dec = self.pipe.tokenizer.decode
            left, right = dec(list(kept[:pos])).strip(), dec(list(kept[pos:])).strip()
        return " ".join(t for t in (left, PLACEHOLDER, right) if t)

    # ------------------------------------------------------------ receiver
    def _generate(self, ids: List[int], v: np.ndarray, seed: int, size) -> np.ndarray:
        import torch

        if self.bundle is not None:  # the context skips the placeholder's id
            return self.bundle.render(ids, v, size)
        from ..models.hf import encode_ids, generate

        with hf_lock():
            emb = self.pipe.text_encoder.get_input_embeddings()
            with torch.no_grad():
                emb.weight[self.token_id] = torch.as_tensor(v, dtype=emb.weight.dtype, device=emb.weight.device)
            cond = encode_ids(self.pipe, ids)
            return generate(self.pipe, seed, self.resolution, self.resolution, self.gen_steps, self.guidance,
                            prompt_embeds=cond, size=size)

    def decode(self, frame: SemanticFrame, ctx: Optional[LinkContext] = None) -> Optional[np.ndarray]:
        """Received frame -> image, or None (lost digital part with ``on_crc_fail="lost"``,
        or an unusable header)."""
        self._apply_threads()
        from ..models.hf import unpack_ids

        y = np.asarray(frame.analog, np.float64)
        if y.size != self.dim + (self.dim % 2) or not np.all(np.isfinite(y)):
            return None  # not an embedding of this model (or a corrupted one)
        y = y[: self.dim]
        if frame.crc_ok is False:
            if self.on_crc_fail == "lost":
                return None
            # un-scaled unit-power symbols: sqrt(2/D) brings the vector to unit norm
            padded = self.dim + (self.dim % 2)
            v = y * math.sqrt(2.0 / padded) * self.expected_norm
            return self._generate([self.token_id], v, self.seed, None)
        h = frame.header or {}
        try:
            kept = unpack_ids(frame.digital, h.get("dt", ""))
            pos, norm, seed = int(h["pos"]), float(h["norm"]), int(h.get("seed", self.seed))
            size = h.get("size")
            size = (int(size[0]), int(size[1])) if size else None
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        if not 0 <= pos <= len(kept) or not np.isfinite(norm) or norm <= 0 or any(i >= self.vocab_size for i in kept):
            return None
        ids = kept[:pos] + [self.token_id] + kept[pos:]
        return self._generate(ids, y * norm, seed, size)
