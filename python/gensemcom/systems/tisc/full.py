"""TISC, profiles ``full`` (BLIP base + Stable Diffusion 1.5 by Hugging Face id or local
path) and ``tiny`` (random tiny BLIP and SD, for tests): SD cross-attention token
scores, noise-robust textual inversion in SD's text encoder, generation with the
injected embedding. See :mod:`gensemcom.systems.tisc` for the method."""
from __future__ import annotations

import contextlib
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...phy.channels import sigma_from_snr
from .._caption_diffusion import CAPTION_DIFFUSION_OPTIONS, CaptionDiffusionSystem
from ..base import as_image
from ..registry import register_system
from .common import PLACEHOLDER, TISC_OPTIONS, TISCBase, select_token

PROFILES = {
    "full": dict(resolution=512, ti_steps=500, gen_steps=50, guidance=7.5, caption_max_tokens=30, num_beams=3),
    "tiny": dict(resolution=32, ti_steps=3, gen_steps=2, guidance=2.0, caption_max_tokens=8, num_beams=1),
}


def hf_lock():
    """The lock guarding the shared SD pipeline (:data:`gensemcom.models.hf.PIPE_LOCK`)."""
    from ...models.hf import PIPE_LOCK

    return PIPE_LOCK


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

    from ...models.hf import encode_ids

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


# ---------------------------------------------------------------- the backend
@register_system("tisc", profiles=("full", "tiny"), summary="TISC: caption ids digital, a textual-inversion "
                 "embedding analog, the image regenerated from the hybrid prompt")
class TISCFull(TISCBase, CaptionDiffusionSystem):
    """TISC (Kim et al., 2025): BLIP caption, SD-attention placeholder, noise-robust
    textual inversion; caption ids digital, embedding analog.

    Args:
        profile (str): ``"full"`` (BLIP base + SD 1.5, see :mod:`gensemcom.models.hf`)
            or ``"tiny"`` (random tiny models for tests).
        device (str | None): torch device (default CUDA when available).
        blip (str | None), sd (str | None): model ids or local directories overriding
            the profile's (full: ``$GENSEMCOM_BLIP`` / ``$GENSEMCOM_SD`` or defaults).
        dtype: torch dtype (default float16 on CUDA, float32 on CPU).
        on_crc_fail (str): ``"lost"`` (decode returns None) or ``"embedding-only"``.
        ti_steps (int), lr (float), train_snr_db (float | None), resolution (int),
            seed (int): textual inversion settings (profile defaults: full 500 steps
            at 512 px, tiny 3 steps at 32 px, lr 5e-3; -5 dB; seed 0). The seed also
            seeds generation (sent in the header).
        gen_steps (int), guidance (float): denoising steps and classifier-free
            guidance scale of the receiver.
        caption_max_tokens (int), num_beams (int): BLIP captioning settings.
        fallback_norm (float | None): embedding norm for ``"embedding-only"``
            decoding (default :attr:`expected_norm`, the mean norm of SD's token
            embeddings).
        progress (bool): show the textual-inversion progress bar.
        threads (int | None): torch CPU threads, set again before every encode and
            decode (the PHY's numba/OpenMP code may change torch's setting).

    Raises:
        ValueError: ``on_crc_fail`` or a resolution not a multiple of 8.
        gensemcom.models.hf.ModelNotAvailable: a model that cannot be loaded.
    """

    OPTIONS = TISC_OPTIONS + tuple(o for o in CAPTION_DIFFUSION_OPTIONS if o.name not in
                                   {t.name for t in TISC_OPTIONS})

    def __init__(self, profile: str = "full", device: Optional[str] = None, blip: Optional[str] = None,
                 sd: Optional[str] = None, dtype=None, on_crc_fail: str = "embedding-only", ti_steps: Optional[int] = None,
                 lr: Optional[float] = None, train_snr_db: Optional[float] = -5.0, resolution: Optional[int] = None,
                 seed: int = 0, gen_steps: Optional[int] = None, guidance: Optional[float] = None,
                 caption_max_tokens: Optional[int] = None, num_beams: Optional[int] = None,
                 fallback_norm: Optional[float] = None, progress: bool = True, threads: Optional[int] = None):
        self._policy(on_crc_fail)
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

    def _invert(self, img: np.ndarray):
        with hf_lock():
            p = self.prepare(img)
            prompt = p["kept"][: p["pos"]] + [self.token_id] + p["kept"][p["pos"]:]
            v, losses = textual_inversion(self.pipe, p["latents"], prompt, self.token_id, p["init"],
                                          self.ti_steps, self.lr, self.train_snr_db, self.seed, self.progress)
        return p, v, losses

    def prepare(self, image: np.ndarray):
        """Caption, token selection and initial embedding (everything before TI).

        Returns:
            dict: ``caption``, ``ids`` (caption ids), ``word`` (selected, or None),
            ``kept`` (ids without the word), ``pos``, ``init`` (D,), ``scores`` (per
            word), ``latents``.
        """
        import torch

        from ...models.hf import prompt_ids

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

    def prompt_text(self, kept: Sequence[int], pos: int) -> str:
        dec = self.pipe.tokenizer.decode
        left, right = dec(list(kept[:pos])).strip(), dec(list(kept[pos:])).strip()
        return " ".join(t for t in (left, PLACEHOLDER, right) if t)

    def _generate(self, ids: List[int], v: np.ndarray, seed: int, size) -> np.ndarray:
        import torch

        from ...models.hf import encode_ids, generate

        with hf_lock():
            emb = self.pipe.text_encoder.get_input_embeddings()
            with torch.no_grad():
                emb.weight[self.token_id] = torch.as_tensor(v, dtype=emb.weight.dtype, device=emb.weight.device)
            cond = encode_ids(self.pipe, ids)
            return generate(self.pipe, seed, self.resolution, self.resolution, self.gen_steps, self.guidance,
                            prompt_embeds=cond, size=size)

