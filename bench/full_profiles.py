#!/usr/bin/env python3
"""Every full profile timed with random weights at the published sizes (issue 18).

Compute does not depend on the weights, so each full profile's models are built from
the published configurations (:mod:`gensemcom.models.published`) with random weights,
nothing downloaded, and run through the project's own code paths:

* **TISC** (and prompt-only, which is TISC without the inversion): BLIP's caption
  (``generate``, 3 beams, 30 new tokens forced), the token selection by SD's
  cross-attention (:func:`~gensemcom.systems.tisc.full.sd_token_attention`, 3 UNet passes),
  the textual-inversion step (:func:`~gensemcom.systems.tisc.full.textual_inversion`)
  and the receiver's generation (:func:`gensemcom.models.hf.generate`, guidance 7.5);
* **SC-SIC**: ``bench/sc_sic_full.py`` (the EfficientNet-V2-S encoder, Stage B lite and
  full, Stage A), run from here;
* **task-adaptive**: SegFormer-B0 on the working size (phase 1), CLIPSeg for the task's
  attention (the feedback), and the two-ControlNet SD 1.5 generation of phases 2 and 3;
* **GenED-SC**: CLIP ViT-B/16's image and text towers (the score map's input), the
  vision-language captioner (Qwen2-VL-2B: prefill of the image and prompt, then new
  tokens) and the InstructPix2Pix editor.

A denoising loop is run with 1 and 3 steps: half the difference is the time per step
and the rest is the fixed part, so the time at the system's default steps (TISC 50, SC-SIC
10, task-adaptive 20, InstructPix2Pix 20) is ``fixed + steps x per-step``, and the
textual inversion's 500 steps likewise. Every stage runs in its own process, so its
peak memory is its own: ``torch.cuda.max_memory_allocated`` on a GPU, the process's peak
RSS on a CPU (the weights included). The tokenizers are the tests' tiny ones (their ids
fall inside the published vocabularies): a tokenizer's vocabulary does not change the
compute. ``--small`` (the default on a CPU) uses 256 x 256 images for the SD-based
stages and 512 for SC-SIC's lite Stage B only, and fewer new tokens; the report
names the device, the sizes and the steps of every number.

Example:
    python bench/full_profiles.py                         # every stage on this device
    python bench/full_profiles.py --stages tisc.generate,sc_sic --threads 2
    python bench/full_profiles.py --markdown              # the README's table from results/bench/full_profiles.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench" / "full_profiles.json"

#: stage -> (system, what it is, the system's default steps for the extrapolation)
STAGES = {
    "tisc.caption": ("tisc", "BLIP base caption, 3 beams", None),
    "tisc.select": ("tisc", "token selection: SD 1.5 cross-attention, 3 UNet passes", None),
    "tisc.inversion": ("tisc", "noise-robust textual inversion, per step and x500", 500),
    "tisc.generate": ("tisc", "SD 1.5 generation, guidance 7.5, per step and x50", 50),
    "sc_sic": ("sc_sic", "EfficientNet-V2-S encoder, Stage B (x10 steps), Stage A (bench/sc_sic_full.py)", 10),
    "task_adaptive.segment": ("task_adaptive", "phase 1: SegFormer-B0 on the 384 x 512 working image", None),
    "task_adaptive.attention": ("task_adaptive", "feedback: CLIPSeg rd64 attention for the task", None),
    "task_adaptive.generate": ("task_adaptive", "phases 2 and 3: SD 1.5 + seg and Canny ControlNets, x20 steps",
                               20),
    "gened_sc.clip": ("gened_sc", "CLIP ViT-B/16 image and text towers (score map input)", None),
    "gened_sc.caption": ("gened_sc", "Qwen2-VL-2B caption: prefill, then new tokens", None),
    "gened_sc.edit": ("gened_sc", "InstructPix2Pix editor, x20 steps", 20),
}


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device) -> dict:
    import torch

    if str(device).startswith("cuda"):
        return {"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)}
    return {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _timed(fn, device, repeats=1):
    best, out = None, None
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, out


def _build(name, device, dtype):
    from gensemcom.models import published

    m = published.build(name, device=device, dtype=dtype)
    return m.eval().requires_grad_(False)


def _sd_parts(device, dtype, unet_name="sd15-unet"):
    """Random SD 1.5 (or InstructPix2Pix) UNet, VAE and text encoder; the tests' tiny
    CLIP tokenizer and scheduler."""
    from diffusers import DDIMScheduler
    from transformers import CLIPTokenizer

    from gensemcom.models.tiny_hf import tiny_sd_dir

    tiny = tiny_sd_dir()
    tok = CLIPTokenizer.from_pretrained(tiny / "tokenizer", model_max_length=77)
    sched = DDIMScheduler.from_pretrained(tiny / "scheduler")
    return dict(unet=_build(unet_name, device, dtype), vae=_build("sd15-vae", device, dtype),
                text_encoder=_build("sd15-text-encoder", device, dtype), tokenizer=tok, scheduler=sched)


def _sd_pipe(device, dtype):
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline(**_sd_parts(device, dtype), safety_checker=None, feature_extractor=None,
                                requires_safety_checker=False)
    p.set_progress_bar_config(disable=True)
    return p


def _per_step(run, device, steps_default):
    """``run(k)`` with k = 1 and 3 steps -> fixed part, per step, and the time at the default steps
    (the first run also warms the allocator up; the difference of two steps averages their noise)."""
    t1, _ = _timed(lambda: run(1), device)
    t3, _ = _timed(lambda: run(3), device)
    step = max(t3 - t1, 0.0) / 2
    fixed = max(t1 - step, 0.0)
    return {"one_step_s": round(t1, 3), "three_steps_s": round(t3, 3), "per_step_s": round(step, 3),
            "fixed_s": round(fixed, 3), "default_steps": steps_default,
            "at_default_steps_s": round(fixed + step * steps_default, 2)}


def run_stage(stage: str, device: str, dtype_name: str, size: int, tokens: int) -> dict:
    """One stage in this process (see :data:`STAGES`)."""
    import numpy as np
    import torch

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    steps_default = STAGES[stage][2]
    row = {"stage": stage, "system": STAGES[stage][0], "what": STAGES[stage][1], "size": size}
    if stage == "tisc.caption":
        m = _build("blip-base-captioning", device, dtype)
        side = int(m.config.vision_config.image_size)
        px = torch.rand(1, 3, side, side, device=device, dtype=dtype)
        t, out = _timed(lambda: m.generate(pixel_values=px, num_beams=3, max_new_tokens=tokens,
                                           min_new_tokens=tokens), device)
        row.update(size=side, new_tokens=int(out.shape[1]) - 1, time_s=round(t, 3))
    elif stage in ("tisc.select", "tisc.inversion", "tisc.generate"):
        from gensemcom.models.hf import generate
        from gensemcom.systems.tisc.full import image_latents, sd_token_attention, textual_inversion

        pipe = _sd_pipe(device, dtype)
        img = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
        ids = pipe.tokenizer("a photo of a red barn under a blue sky").input_ids[1:-1]
        token = ids[3]
        if stage == "tisc.select":
            lat = image_latents(pipe, img, size)
            t, _ = _timed(lambda: sd_token_attention(pipe, lat, ids), device)
            row.update(time_s=round(t, 3))
        elif stage == "tisc.inversion":
            lat = image_latents(pipe, img, size).detach()
            pipe.unet.requires_grad_(False)
            init = np.zeros(int(pipe.text_encoder.config.hidden_size), np.float32)
            row.update(_per_step(lambda k: textual_inversion(pipe, lat, ids, token, init, steps=k, progress=False),
                                 device, steps_default))
        else:
            row.update(_per_step(lambda k: generate(pipe, 0, size, size, k, 7.5, prompt="a red barn"),
                                 device, steps_default))
    elif stage == "task_adaptive.segment":
        m = _build("segformer-b0-cityscapes", device, dtype)
        x = torch.rand(1, 3, 384, 512, device=device, dtype=dtype)
        with torch.no_grad():
            t, _ = _timed(lambda: m(pixel_values=x), device)
        row.update(size="384x512", time_s=round(t, 3))
    elif stage == "task_adaptive.attention":
        m = _build("clipseg-rd64-refined", device, dtype)
        x = torch.rand(1, 3, 352, 352, device=device, dtype=dtype)
        ids = torch.randint(0, 1000, (1, 8), device=device)
        with torch.no_grad():
            t, _ = _timed(lambda: m(input_ids=ids, pixel_values=x), device)
        row.update(size=352, time_s=round(t, 3))
    elif stage == "task_adaptive.generate":
        from diffusers import StableDiffusionControlNetPipeline
        from PIL import Image

        nets = [_build("controlnet-sd15-seg", device, dtype), _build("controlnet-sd15-canny", device, dtype)]
        pipe = StableDiffusionControlNetPipeline(**_sd_parts(device, dtype), controlnet=nets, safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        h, w = (size * 3 // 4) // 8 * 8, size
        cond = [Image.fromarray((np.random.default_rng(i).random((h, w, 3)) * 255).astype(np.uint8))
                for i in range(2)]

        def run(k):
            g = torch.Generator("cpu").manual_seed(0)
            with torch.no_grad():
                return pipe("a city street", image=cond, height=h, width=w, num_inference_steps=k,
                            guidance_scale=7.5, generator=g, output_type="np").images
        row.update(size=f"{h}x{w}", **_per_step(run, device, steps_default))
    elif stage == "gened_sc.clip":
        m = _build("clip-vit-b16", device, dtype)
        side = int(m.config.vision_config.image_size)
        x = torch.rand(1, 3, side, side, device=device, dtype=dtype)
        ids = torch.randint(0, 1000, (1, 12), device=device)
        with torch.no_grad():
            t, _ = _timed(lambda: (m.vision_model(pixel_values=x), m.text_model(input_ids=ids)), device)
        row.update(size=side, time_s=round(t, 3))
    elif stage == "gened_sc.caption":
        m = _build("qwen2-vl-2b-instruct", device, dtype)
        cfg = m.config
        side = size // 28 * 28
        grid = torch.tensor([[1, side // 14, side // 14]], device=device)
        n_patch = int(grid.prod())
        vc = cfg.vision_config
        patch_dim = int(getattr(vc, "in_channels", 3) * getattr(vc, "temporal_patch_size", 2) * vc.patch_size ** 2)
        pixel_values = torch.rand(n_patch, patch_dim, device=device, dtype=dtype)
        n_img = n_patch // int(getattr(vc, "spatial_merge_size", 2)) ** 2
        prompt = 60  # the paper's captioning prompt, about 60 tokens
        ids = torch.randint(0, 1000, (1, prompt + n_img + 2), device=device)
        ids[0, 1] = cfg.vision_start_token_id
        ids[0, 2:2 + n_img] = cfg.image_token_id
        ids[0, 2 + n_img] = cfg.vision_end_token_id
        # what the processor returns beside the ids: 1 where an image token is (multimodal RoPE)
        kw = dict(input_ids=ids, pixel_values=pixel_values, image_grid_thw=grid,
                  mm_token_type_ids=(ids == cfg.image_token_id).long())
        with torch.no_grad():
            t_pre, _ = _timed(lambda: m(**kw), device)
            t_gen, out = _timed(lambda: m.generate(**kw, max_new_tokens=tokens, min_new_tokens=tokens,
                                                   do_sample=False), device)
        per_tok = max(t_gen - t_pre, 0.0) / max(tokens, 1)
        row.update(size=side, image_tokens=n_img, prompt_tokens=prompt, prefill_s=round(t_pre, 3),
                   new_tokens=tokens, generate_s=round(t_gen, 3), per_token_s=round(per_tok, 4),
                   at_100_tokens_s=round(t_pre + 100 * per_tok, 2))
    elif stage == "gened_sc.edit":
        from diffusers import StableDiffusionInstructPix2PixPipeline
        from PIL import Image

        pipe = StableDiffusionInstructPix2PixPipeline(**_sd_parts(device, dtype, "instruct-pix2pix-unet"),
                                                      safety_checker=None, feature_extractor=None,
                                                      requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        img = Image.fromarray((np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8))

        def run(k):
            g = torch.Generator("cpu").manual_seed(0)
            with torch.no_grad():
                return pipe("make it a photograph", image=img, num_inference_steps=k, guidance_scale=7.5,
                            image_guidance_scale=1.5, generator=g, output_type="np").images
        row.update(**_per_step(run, device, steps_default))
    else:
        raise ValueError(f"unknown stage {stage!r}")
    row.update(_peak(device))
    return row


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def markdown(report: dict) -> str:
    """The README's table."""
    lines = [f"Device: {report['device']}; dtype {report['dtype']}; torch {report['torch']}, diffusers "
             f"{report['diffusers']}, transformers {report['transformers']}; random weights at the published sizes "
             f"(`python bench/full_profiles.py{' --small' if report.get('small') else ''}`).", "",
             "| system | stage | size | measured | at the system's settings | peak memory |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        mem = r.get("peak_gpu_mib") or r.get("peak_rss_mib")
        mem = f"{mem / 1024:.1f} GiB{' (GPU)' if 'peak_gpu_mib' in r else ' RSS'}" if mem else "-"
        if "error" in r:
            lines.append(f"| {r['system']} | {r['what']} | - | failed: {r['error'][:80]} | - | - |")
            continue
        if "per_step_s" in r:
            meas = f"{r['per_step_s']:.2f} s/step + {r['fixed_s']:.2f} s"
            full = f"{r['at_default_steps_s']:.1f} s ({r['default_steps']} steps)"
        elif "per_token_s" in r:
            meas = f"prefill {r['prefill_s']:.2f} s, {r['per_token_s']:.2f} s/token"
            full = f"{r['at_100_tokens_s']:.1f} s (100 tokens)"
        elif "stage_b_step_s" in r:
            meas = (f"encode {r['encode_s']:.2f} s, Stage B {r['stage_b_step_s']:.2f} s/step, Stage A "
                    f"{r['stage_a_decode_s']:.2f} s")
            full = f"{r['reconstruct_10_steps_s']:.1f} s (10 steps)"
        else:
            meas = f"{r['time_s']:.2f} s" + (f" ({r['new_tokens']} new tokens)" if "new_tokens" in r else "")
            full = meas
        lines.append(f"| {r['system']} | {r['what']} | {r.get('size', '-')} | {meas} | {full} | {mem} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Example:")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages (default: all): "
                    + ", ".join(STAGES))
    ap.add_argument("--device", default=None, help="torch device (default: CUDA when available, else CPU)")
    ap.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, "
                    "float32 on a CPU)")
    ap.add_argument("--small", action="store_true", default=None,
                    help="the CPU configuration: 256 x 256 SD images, 8 new tokens, SC-SIC lite at 512 only "
                         "(default on a CPU)")
    ap.add_argument("--full", dest="small", action="store_false", help="the published settings even on a CPU")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", default=str(OUT), help=f"results file (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--markdown", action="store_true", help="print the table of --json and exit")
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # a child process runs one stage
    ap.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tokens", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.markdown:
        print(markdown(json.loads(Path(a.json).read_text())))
        return 0
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.startswith("cuda")
    dtype = a.dtype or ("float16" if on_gpu else "float32")
    small = (not on_gpu) if a.small is None else a.small
    size, tokens = (256, 8) if small else (512, 30)
    if a.stage:  # child: one stage, its JSON on stdout's last line
        print(json.dumps(run_stage(a.stage, device, dtype, a.size or size, a.tokens or tokens)))
        return 0
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        ap.error(f"unknown stage(s) {bad}; known: {', '.join(STAGES)}")
    import diffusers
    import transformers
    from tqdm.auto import tqdm

    report = {"device": _device_name(device), "dtype": dtype, "small": small, "torch": torch.__version__,
              "diffusers": diffusers.__version__, "transformers": transformers.__version__, "rows": []}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    base = [sys.executable, __file__, "--device", device, "--dtype", dtype] + \
        (["--threads", str(a.threads)] if a.threads else []) + (["--small"] if small else ["--full"])
    for stage in tqdm(stages, desc="full profiles", unit="stage"):
        t0 = time.perf_counter()
        if stage == "sc_sic":
            sc_json = Path(a.json).with_name("full_profiles_sc_sic.json")
            cmd = [sys.executable, str(ROOT / "bench" / "sc_sic_full.py"), "--json", str(sc_json),
                   "--models", "lite" if small else "lite,full", "--sizes", "512" if small else "512,1024",
                   "--steps", "1" if small else "10", "--dtype", dtype] + \
                (["--device", device]) + (["--threads", str(a.threads)] if a.threads else [])
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode == 0:
                for run in json.loads(sc_json.read_text())["runs"]:
                    report["rows"].append({"stage": "sc_sic", "system": "sc_sic", "what": (
                        f"Stage B {run.get('model')}: encoder, Stage B, Stage A"), **run})
            else:
                report["rows"].append({"stage": stage, "system": "sc_sic", "what": STAGES[stage][1],
                                       "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"})
        else:
            r = subprocess.run(base + ["--stage", stage], capture_output=True, text=True, env=env)
            try:
                report["rows"].append(json.loads(r.stdout.strip().splitlines()[-1]))
            except (IndexError, json.JSONDecodeError):
                err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
                report["rows"].append({"stage": stage, "system": STAGES[stage][0], "what": STAGES[stage][1],
                                       "error": err})
        report["rows"][-1]["wall_s"] = round(time.perf_counter() - t0, 1)
        tqdm.write(json.dumps(report["rows"][-1]))
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
