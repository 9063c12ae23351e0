"""GenED-SC: importance-aware dual-branch JSCC, a caption, and generative editing.

After "GenED-SC" (``../shared/papers/gened-sc-mllm-editing.txt``, sections III-V).

**Transmitter** (:meth:`GenEDSC.encode`):

1. The image is resized to the working size (the paper's 256 x 256).
2. The importance path: the score map ``S`` from image and text embeddings, the
   semantic importance predictor's binary patch mask ``M`` (16 x 16-pixel patches,
   arg-max at inference), and the two JSCC branches (Swin foreground, ResConv-CBAM
   background) of :mod:`gensemcom.models.gened_sc`.
3. The bandwidth: ``floor(CR * 3 S^2)`` complex channel uses (8,192 at 256 x 256, CR
   1/24) split by the mask (:func:`~gensemcom.models.gened_sc.allocate`): background
   cells 2 uses each, foreground cells the rest, up to 24. They go as **two named
   analog segments** of one frame, ``fg`` then ``bg``, each at unit power. The mask
   (one bit per patch, 32 bytes at 256 x 256) travels in the protected header, key
   ``fg``.
4. The caption, over the **digital path** as UTF-8 (the paper: LDPC rate 1/2,
   16-QAM, which is the link's default MCS; ``gensemcom link --modulation 16
   --code-rate 1/2``). The paper's prompt (section IV-D) asks a vision-language model
   for a detailed description in the ``full`` profile; offline, the embedded TISC
   captioner writes a short caption (it takes no prompt).

**Receiver** (:meth:`GenEDSC.decode`): the mask from the header gives the allocation;
the segments are merged back, the two decoders and the fusion network give the
coarse image ``I_r``; the **editor** then rewrites it with the paper's editing prompt
and the received caption (``full``: InstructPix2Pix by default, any diffusers editing
pipeline by id). A frame whose header was lost cannot be routed: decode returns None.
A lost caption (payload CRC failure) leaves ``I_r`` unedited.

**Profiles.**

* ``embedded``: the shipped weights (``models/weights/gened_sc_embedded.pt``, trained
  here on DUTS; the model card names every substitution: EfficientNet-Lite0 for CLIP's
  image encoder and for VGG, MiniLM for CLIP's text encoder), the embedded TISC
  captioner, and **no editor** (no image-editing model exists offline): the output
  is the JSCC stage's ``I_r`` and each frame's report says ``editor: none``.
* ``full``: a vision-language captioner with the paper's prompt and a diffusers editor
  (:mod:`gensemcom.models.gened_sc_full`), on the JSCC weights given by ``path``
  (a bundle trained with ``--backbone clip`` uses CLIP for the score map) or else the
  embedded ones.
* ``tiny``: random models (tests): a random JSCC, the tiny random BLIP captioner and
  the tiny random InstructPix2Pix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..frame import SemanticFrame, header_symbols
from .base import LinkContext, Option, SemanticSystem, as_image, header_size
from .registry import register_system

DEFAULT_SNR_DB = 10.0
TINY_SEED = 4321
#: the longest caption sent (UTF-8 bytes); longer ones are cut at a character boundary
MAX_CAPTION_BYTES = 1024
EDITORS = ("auto", "none")
BUDGET_RULE = ("protected header + analog segments <= a given budget, analog = floor(CR * 3 S^2) at the working "
               "size S without one; the caption's digital channel uses come on top, as in the paper")


def _cut_utf8(text: str, limit: int) -> bytes:
    data = text.encode("utf-8")[:limit]
    return data.decode("utf-8", errors="ignore").encode("utf-8")


@register_system("gened_sc", profiles=("full", "embedded", "tiny"),
                 summary="GenED-SC: importance-routed dual-branch JSCC (fg/bg segments), caption, generative editing")
class GenEDSC(SemanticSystem):
    """GenED-SC (see the module).

    Args:
        profile (str): ``"full"``, ``"embedded"`` or ``"tiny"``.
        path (str | None): JSCC weights (a bundle or a training checkpoint) instead of the shipped ones.
        size (int): working side S (a multiple of 64; the paper: 256).
        text (str | None): the class-level text ``T`` of the score map (None: the one the
            weights were trained with); another text steers the importance map.
        caption (bool): send a caption at all.
        editor (str): ``"auto"`` (the profile's editor) or ``"none"``; in the full profile
            also a diffusers editing pipeline id or folder.
        captioner (str | None), clip (str | None): the full profile's vision-language model
            and CLIP ids or folders (default: :mod:`gensemcom.models.gened_sc_full`).
        edit_steps (int): the editor's denoising steps.
        edit_prompt (str | None): the editor's prompt template (``{caption}`` is replaced;
            default: the paper's, :data:`gensemcom.models.gened_sc_full.EDIT_PROMPT`).
        seed (int): the editor's seed.
        device (str | None), threads (int | None): torch device and CPU threads.
        default_snr_db (float): SNR assumed when the link does not say.

    Raises:
        FileNotFoundError: missing weights.
        gensemcom.models.hf.ModelNotAvailable: a full-profile model that cannot be loaded.
    """

    OPTIONS = (Option("path", None, "JSCC weights file or checkpoint to load instead of the profile's"),
               Option("size", 256, "working side in pixels (a multiple of 64; the paper: 256)"),
               Option("text", None, "class-level text T of the importance score map (default: the trained one)"),
               Option("caption", True, "send the caption over the digital path"),
               Option("editor", "auto", "receiver editor: auto (the profile's), none, or a diffusers id/folder"),
               Option("captioner", None, "full profile: vision-language model id or folder"),
               Option("clip", None, "full profile: CLIP id or folder (for weights trained with --backbone clip)"),
               Option("edit_steps", 20, "editor denoising steps"),
               Option("edit_prompt", None, "editor prompt template with {caption} (default: the paper's; a 77-token "
                      "CLIP text encoder, as InstructPix2Pix's, keeps only its first few caption tokens)"),
               Option("seed", 0, "editor seed"),
               Option("threads", None, "torch CPU threads (default: torch's setting)"),
               Option("default_snr_db", DEFAULT_SNR_DB, "SNR (dB) assumed when the link does not say"))

    def __init__(self, profile: str = "embedded", path=None, size: int = 256, text: Optional[str] = None,
                 caption: bool = True, editor: str = "auto", captioner: Optional[str] = None,
                 clip: Optional[str] = None, edit_steps: int = 20, edit_prompt: Optional[str] = None, seed: int = 0,
                 device: Optional[str] = None,
                 threads: Optional[int] = None, default_snr_db: float = DEFAULT_SNR_DB):
        import torch

        from ..models import gened_sc as G

        if profile not in ("full", "embedded", "tiny"):
            raise ValueError(f"unknown GenED-SC profile {profile!r}: use 'full', 'embedded' or 'tiny'")
        if int(size) < 64 or int(size) % 64:
            raise ValueError(f"size must be a positive multiple of 64, got {size}")
        self.threads = threads
        if threads:
            torch.set_num_threads(int(threads))
        self.profile, self.size, self.seed = profile, int(size), int(seed)
        self.edit_steps = int(edit_steps)
        self.edit_prompt = edit_prompt
        self.default_snr_db = float(default_snr_db)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.send_caption = bool(caption)
        if profile == "tiny" and path is None:
            from ..models.effnet_lite import EfficientNetLite0

            state = torch.random.get_rng_state()
            torch.manual_seed(TINY_SEED)
            try:
                self.model = G.GenEDJSCC(n=16, u_max=G.U_MAX, swin_depth=2, cbam_depth=1, score_dim=32).eval()
                self.backbone = G.EmbeddedBackbone(EfficientNetLite0().eval().requires_grad_(False))
                self._balance_tiny_mask()
            finally:
                torch.random.set_rng_state(state)
            self.record = {}
        else:
            p = Path(path) if path is not None else G.WEIGHTS_PATH
            if not p.is_file():
                raise FileNotFoundError(f"GenED-SC weights {p} not found: train them with `gensemcom train "
                                        "gened-sc`, reinstall the package, or use profile='tiny'")
            self.model, self.record = G.load_bundle(p)
            if self.model.cfg.get("backbone") == "clip":
                from ..models.gened_sc_full import ClipBackbone

                self.backbone = ClipBackbone(clip, device=str(self.device))
            else:
                self.backbone = G.EmbeddedBackbone()
        self.model.to(self.device)
        self.backbone.to(self.device)
        self.text = self.model.cfg.get("text", G.DEFAULT_TEXT) if text is None else str(text)
        self._e_t = None if text is None or text == self.model.cfg.get("text") else \
            self.backbone.text([self.text]).to(self.device)
        self._captioner = self._make_captioner(captioner) if self.send_caption else None
        self.editor_name, self._editor = self._make_editor(editor)

    # ------------------------------------------------------------ models
    def _balance_tiny_mask(self):
        """Shift the random tiny model's mask bias so that it routes half of a fixed test
        picture's patches each way: frames of the tiny profile then carry both segments."""
        import torch

        y, x = np.mgrid[0:128, 0:128]
        pic = np.stack([x * 2, y * 2, (x + y)], -1).astype(np.float32) / 255.0
        t = torch.from_numpy(pic).permute(2, 0, 1).unsqueeze(0)
        with torch.no_grad():
            e_v, g = self.backbone.embed(t)
            v = self.model.features(t, torch.tensor([10.0]))
            s = self.model.scores(e_v, g, tuple(v.shape[-2:]))
            d = self.model.sip(v, s, hard=True)["logits"].diff(dim=-1)
            self.model.sip.mlp[2].bias[1] -= float(d.median()) + 1e-4

    def _make_captioner(self, captioner):
        if self.profile == "full":
            from ..models.gened_sc_full import VLMCaptioner

            return VLMCaptioner(captioner, device=str(self.device))
        if self.profile == "tiny":
            from ..models import hf
            from ..models.tiny_hf import tiny_blip_dir

            model, proc = hf.load_blip(str(tiny_blip_dir()), device="cpu")
            return lambda img: hf.caption(model, proc, img, max_new_tokens=8, num_beams=1)
        from ..models.tisc_embedded import EmbeddedTISC

        bundle = EmbeddedTISC.load(trunk=getattr(self.backbone, "trunk", None))
        return lambda img: bundle.vocab.decode(bundle.caption(img)[0])

    def _make_editor(self, editor: str):
        if editor == "none" or (editor == "auto" and self.profile == "embedded"):
            return "none", None
        from ..models.gened_sc_full import Editor

        if editor == "auto" and self.profile == "tiny":
            from ..models.tiny_hf import tiny_editor_dir

            editor = str(tiny_editor_dir())
        kw = {} if self.edit_prompt is None else {"prompt": str(self.edit_prompt)}
        ed = Editor(None if editor == "auto" else editor, device=str(self.device), steps=self.edit_steps, **kw)
        return str(getattr(ed, "model_id", editor)), ed

    def _apply_threads(self):
        if self.threads:
            import torch

            torch.set_num_threads(int(self.threads))

    def _snr(self, ctx: Optional[LinkContext]) -> float:
        snr = None if ctx is None else ctx.snr_db
        return self.default_snr_db if snr is None else float(snr)

    def _resize(self, img: np.ndarray, size) -> "object":
        """uint8 (H, W, 3) -> (1, 3, *size) in [0, 1], by DeepJSCC's antialiased resize."""
        import torch

        from .deepjscc import _resize

        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        return _resize(x, size).clamp(0, 1)

    def caption(self, image: np.ndarray) -> str:
        """The transmitter's caption of an image ("" when captions are off)."""
        return "" if self._captioner is None else str(self._captioner(as_image(image))).strip()

    # ------------------------------------------------------------ transmitter
    def encode(self, image: np.ndarray, ctx: Optional[LinkContext] = None) -> SemanticFrame:
        """Image -> frame: segments ``fg`` and ``bg``, the patch mask in the header, the
        caption (UTF-8) in the digital part; the accounting in ``meta["report"]``.

        Raises:
            BudgetError: a budget smaller than the header plus one use per latent cell.
        """
        import torch

        from ..models import gened_sc as G
        from .jpeg2000_ldpc import BudgetError

        self._apply_threads()
        img = as_image(image)
        h, w = img.shape[:2]
        s = self.size
        cells = s // G.DOWNSAMPLE
        grid = cells // G.PATCH
        snr = self._snr(ctx)
        text = self.caption(img) if self.send_caption else ""
        digital = _cut_utf8(text, MAX_CAPTION_BYTES)
        x = self._resize(img, (s, s)).to(self.device)
        snr_t = torch.tensor([snr], device=self.device)
        with torch.no_grad():
            e_v, g = self.backbone.embed(x)
            enc = self.model.encode(x, snr_t, e_v, g, e_t=self._e_t, hard=True)
        mask = enc["mask"][0, 0].cpu().numpy() > 0.5
        header = {"size": [int(h), int(w)], "res": s, "fg": G.pack_mask(mask)}
        own = G.total_uses(s, s)
        seg_guess = {"fg": 2 * own, "bg": 2 * own}
        rep = 1 if ctx is None else int(ctx.header_repeat)
        budget = None if ctx is None else ctx.budget_symbols
        head_uses = header_symbols(self.name, dict(header, n=own) if budget is not None else header, seg_guess, rep)
        total = own
        if budget is not None:
            total = min(own, int(budget) - head_uses)
            if total < cells * cells:
                raise BudgetError(f"a budget of {budget} channel uses leaves {total} for GenED-SC's "
                                  f"{cells * cells} latent cells (one use each at least) after the header")
        if total != own:  # a budget's smaller total travels; the receiver derives the default one
            header["n"] = int(total)
        cell_fg = G.mask_cells(mask)
        u = G.allocate(cell_fg, total, self.model.u_bg, self.model.u_max)
        fg, bg = (G.unit_power(v) for v in G.split_latent(enc["z"][0], u, cell_fg))
        segs = {k: v for k, v in (("fg", fg), ("bg", bg)) if v.size}
        report = {"budget_rule": BUDGET_RULE, "analog_uses": int(u.sum()), "fg_uses": fg.size // 2,
                  "bg_uses": bg.size // 2, "fg_patches": int(mask.sum()), "patches": int(mask.size),
                  "fg_share": float(mask.mean()), "header_uses": head_uses, "caption": text,
                  "caption_bytes": len(digital), "work_size": s, "snr_tx": snr, "importance_text": self.text,
                  "editor": self.editor_name, "grid": grid}
        return SemanticFrame(self.name, digital, segs, header, meta={"report": report})

    # ------------------------------------------------------------ receiver
    def receive(self, frame: SemanticFrame, ctx: Optional[LinkContext] = None):
        """Received frame -> ``(I_r (S, S, 3) uint8 before editing, caption or None, size)``,
        or None when the header is lost or inconsistent."""
        import torch

        from ..models import gened_sc as G

        if frame.header_ok is False:
            return None
        hd = frame.header or {}
        size = header_size(hd.get("size"))
        s = hd.get("res")
        if size is None or isinstance(s, bool) or not isinstance(s, int) or s < 64 or s % 64 or s > 2048:
            return None
        cells = s // G.DOWNSAMPLE
        mask = G.unpack_mask(hd.get("fg"), (cells // G.PATCH, cells // G.PATCH))
        if mask is None:
            return None
        total = hd.get("n", G.total_uses(s, s))
        if isinstance(total, bool) or not isinstance(total, int) or not 0 < total <= G.total_uses(s, s):
            return None
        fg, bg = frame.segment("fg"), frame.segment("bg")
        if fg.size + bg.size != 2 * total:
            return None
        cell_fg = G.mask_cells(mask)
        u = G.allocate(cell_fg, total, self.model.u_bg, self.model.u_max)
        try:
            z = G.merge_latent(fg, bg, u, cell_fg, self.model.u_max)
        except ValueError:
            return None
        snr = torch.tensor([self._snr(ctx)], device=self.device)
        cm = torch.from_numpy(cell_fg.astype(np.float32))[None, None].to(self.device)
        with torch.no_grad():
            zc = G.to_complex_layout(z.unsqueeze(0).to(self.device))
            out = self.model.decode(zc, torch.from_numpy(u)[None].to(self.device), cm, snr)
        rec = out[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(rec), self.received_text(frame), size

    def received_text(self, frame: SemanticFrame) -> Optional[str]:
        """The caption, when the digital part arrived intact; else None."""
        from ..codecs import CodecError, unpack_text

        if frame.header_ok is False or frame.crc_ok is False or not frame.digital:
            return None
        try:
            return unpack_text(frame.digital)
        except CodecError:
            return None

    def decode(self, frame: SemanticFrame, ctx: Optional[LinkContext] = None) -> Optional[np.ndarray]:
        """Received frame -> image of the original size (the JSCC stage, then the editor
        when there is one and the caption arrived), or None when the header was lost."""
        self._apply_threads()
        got = self.receive(frame, ctx)
        if got is None:
            return None
        rec, caption, size = got
        if self._editor is not None and caption:
            rec = self._editor(rec, caption, seed=self.seed)
        x = self._resize(rec, size)
        return np.ascontiguousarray(x[0].mul(255).round().byte().permute(1, 2, 0).numpy())
