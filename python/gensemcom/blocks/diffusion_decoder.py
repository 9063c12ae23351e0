"""GNU Radio block: the design's diffusion decoder (the semantic decoder under that name)."""
from __future__ import annotations

from .semantic_decoder import semantic_decoder


class diffusion_decoder(semantic_decoder):
    """The design's "diffusion decoder": SemanticFrame in, image PDU out, any system.

    The receiver block of the link as the design card draws it (frame -> diffusion
    decoder -> image sink). It is :class:`semantic_decoder` under that name: for TISC
    and prompt-only it runs the generative model (Stable Diffusion with the profile
    ``full``, TISC's shipped small generator with ``embedded``, random tiny models
    with ``tiny``); for the other systems it runs their own receiver. Computed by the
    inference worker, never on the scheduler thread.

    Args:
        system (str): semantic system, as at the encoder ("tisc", "prompt-only", ...).
        profile (str): model profile, as at the encoder.
        address (str): worker or broker endpoint ('' starts a local worker).
        timeout_ms (int): reply timeout per attempt (model loading on first use included).
        curve_keys (str): CURVE key directory of a remote worker ('': none).
    """

    block_name = "gensemcom_diffusion_decoder"

    def __init__(self, system="tisc", profile="embedded", address="", timeout_ms=60000, curve_keys=""):
        semantic_decoder.__init__(self, system=system, profile=profile, address=address, timeout_ms=timeout_ms,
                                  curve_keys=curve_keys)
