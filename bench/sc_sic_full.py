#!/usr/bin/env python3
"""SC-SIC's full profile, timed with random weights: Stage B (lite and full) and Stage A.

Builds the published architectures (:data:`gensemcom.models.stable_cascade.PUBLISHED_CONFIGS`:
Stage B ``decoder_lite`` 700M and ``decoder`` 1.5B, Stage A the ``PaellaVQModel``, and
the EfficientNet-V2-S encoder) with random weights, nothing downloaded. Parameters are
counted on the meta device. For each Stage B and image size, the reconstruction runs
through the real ``StableCascadeDecoderPipeline`` path
(:func:`gensemcom.models.stable_cascade.generate`: ``--steps`` Stage B steps, then
Stage A's decoder) on real tensors; Stage A's decode and the encoder are also timed
alone, so the report gives the time per Stage B step and the reconstruction time
extrapolated to ``--default-steps`` (the pipeline's 10). Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU and the process's peak RSS
(``resource.getrusage``) on a CPU. A Stage B that would need more than ``--max-cpu-gb``
of RAM on a CPU is built in bfloat16, or skipped when even that is too much.

The paper reports 0.78 s per 512 x 512 reconstruction on an RTX A6000 (10 steps).

Example:
    python bench/sc_sic_full.py                                   # GPU: lite and full, 512 and 1024
    python bench/sc_sic_full.py --models lite --sizes 512 --steps 1   # a short CPU run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"lite": "decoder_lite", "full": "decoder"}
PAPER_512_S = 0.78


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device: str) -> dict:
    import torch

    if device.startswith("cuda"):
        return {"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)}
    return {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _build(name: str, device: str, dtype):
    """A published model with random weights, built directly in ``dtype`` on ``device``."""
    import torch

    from gensemcom.models import stable_cascade as S

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with S._quiet_diffusers():  # built in ``dtype`` already: .to() only catches stragglers
            return S.build_published(name, device=device).to(dtype).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(old)


def _timed(fn, device: str, repeats: int):
    times, out = [], None
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    from gensemcom.models.sc_sic_embedded import embedding_grid

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example:")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="lite,full", help="Stage B variants: lite, full (default lite,full)")
    ap.add_argument("--sizes", default="512,1024", help="square image sides (default 512,1024)")
    ap.add_argument("--steps", type=int, default=10, help="Stage B steps timed (default 10; 1 on a CPU is fine)")
    ap.add_argument("--default-steps", type=int, default=10, help="steps the extrapolation is for (default 10)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats, best kept (default 3 GPU, 1 CPU)")
    ap.add_argument("--device", default=None, help="torch device (default: CUDA when available)")
    ap.add_argument("--dtype", default=None, help="dtype of Stage A/B (default bfloat16 on CUDA, float32 on CPU)")
    ap.add_argument("--max-cpu-gb", type=float, default=12.0, help="RAM a CPU Stage B may take (default 12)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", default=str(ROOT / "results" / "bench" / "sc_sic_full.json"),
                    help="write the results here (default results/bench/sc_sic_full.json)")
    a = ap.parse_args(argv)

    import diffusers
    import numpy as np
    import torch

    from gensemcom.models import stable_cascade as S

    if a.threads:
        torch.set_num_threads(a.threads)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.startswith("cuda")
    base_dtype = getattr(torch, a.dtype) if a.dtype else (torch.bfloat16 if on_gpu else torch.float32)
    repeats = a.repeats or (3 if on_gpu else 1)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}: use lite, full")

    params = {}
    for name in ("decoder_lite", "decoder", "vqgan", "effnet"):
        m = S.build_published(name, device="meta")
        params[name] = S.count_parameters(m)
        del m
    report = {"device": torch.cuda.get_device_name(0) if on_gpu else f"cpu ({platform.processor() or 'x86'}, "
              f"{torch.get_num_threads()} threads)", "torch": torch.__version__, "diffusers": diffusers.__version__,
              "steps_timed": a.steps, "default_steps": a.default_steps, "repeats": repeats,
              "parameters": params, "published_parameters": S.PUBLISHED_PARAMS, "config_sources": S.CONFIG_SOURCES,
              "paper_512_reconstruction_s": PAPER_512_S, "runs": []}
    print(f"parameters: Stage B lite {params['decoder_lite']:,}, full {params['decoder']:,}; Stage A "
          f"{params['vqgan']:,}; encoder {params['effnet']:,}", file=sys.stderr)

    encoder = _build("effnet", device, torch.float32)
    from diffusers import DDPMWuerstchenScheduler, StableCascadeDecoderPipeline

    for model in models:
        name = MODELS[model]
        dtype = base_dtype
        need_gb = params[name] * torch.finfo(dtype).bits / 8 / 2 ** 30
        if not on_gpu and need_gb * 1.3 > a.max_cpu_gb:
            if dtype != torch.bfloat16 and params[name] * 2 / 2 ** 30 * 1.3 <= a.max_cpu_gb:
                print(f"{model}: {need_gb:.1f} GiB of weights in {dtype} is over --max-cpu-gb; using bfloat16",
                      file=sys.stderr)
                dtype = torch.bfloat16
            else:
                print(f"{model}: skipped ({need_gb:.1f} GiB of weights is over --max-cpu-gb {a.max_cpu_gb})",
                      file=sys.stderr)
                report["runs"].append({"model": model, "skipped": f"needs {need_gb:.1f} GiB"})
                continue
        _reset_peak(device)
        t0 = time.perf_counter()
        decoder = _build(name, device, dtype)
        vqgan = _build("vqgan", device, dtype)
        build_s = time.perf_counter() - t0
        with S._quiet_diffusers():
            pipe = StableCascadeDecoderPipeline(decoder=decoder, tokenizer=None, text_encoder=None,
                                                scheduler=DDPMWuerstchenScheduler(), vqgan=vqgan)
        pipe.set_progress_bar_config(disable=True)
        dim = int(decoder.config.clip_text_pooled_in_channels)
        # no text encoder: Stage B's text condition is the (here zero) empty-prompt embedding
        pipe._gensemcom_empty = (torch.zeros(1, 77, dim, device=device, dtype=dtype),
                                 torch.zeros(1, 1, dim, device=device, dtype=dtype))
        for size in sizes:
            g = embedding_grid(size, size)
            x = torch.rand(1, 3, size, size, device=device)
            with torch.inference_mode():
                if on_gpu:  # warm-up: kernels, allocator, autotuning
                    encoder.embed(x)
                    S.generate(pipe, torch.randn(1, 16, *g), (size, size), steps=1)
                _reset_peak(device)
                enc_s, z = _timed(lambda: encoder.embed(x), device, repeats)
                lat_side = int(g[0] * pipe.config.latent_dim_scale)
                lat = torch.randn(1, 4, lat_side, lat_side, device=device, dtype=dtype)
                stage_a_s, _ = _timed(lambda: vqgan.decode(lat * vqgan.config.scale_factor), device, repeats)
                recon_s, img = _timed(lambda: S.generate(pipe, z.float().cpu(), (size, size), steps=a.steps),
                                      device, repeats)
            per_step = max(recon_s - stage_a_s, 0.0) / max(a.steps, 1)
            row = {"model": model, "stage_b": name, "size": size, "dtype": str(dtype).replace("torch.", ""),
                   "embedding": [16, *g], "latent": [4, lat_side, lat_side], "build_s": round(build_s, 2),
                   "encode_s": round(enc_s, 4), "stage_a_decode_s": round(stage_a_s, 4),
                   "reconstruct_s": round(recon_s, 4), "stage_b_step_s": round(per_step, 4),
                   f"reconstruct_{a.default_steps}_steps_s": round(per_step * a.default_steps + stage_a_s, 4),
                   "image_ok": bool(img.shape == (1, size, size, 3) and np.isfinite(img).all()), **_peak(device)}
            report["runs"].append(row)
            print(json.dumps(row), file=sys.stderr)
        pipe = decoder = vqgan = None  # free them before the next Stage B
        if on_gpu:
            torch.cuda.empty_cache()

    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    print(json.dumps(report["runs"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
