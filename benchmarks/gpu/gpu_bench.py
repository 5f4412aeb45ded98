"""GPU speed check: training tokens/s and model FLOPs utilisation (MFU) on a DialoGPT-medium-shaped GPT-2.

    python benchmarks/gpu/gpu_bench.py --out benchmarks/gpu/results.json        # on a CUDA machine, < 5 min
    python benchmarks/gpu/gpu_bench.py --smoke --out /tmp/gpu.json               # anywhere: tiny shape, CPU

Random weights (speed does not depend on them): 24 layers, 1024 wide, 16 heads, GPT-2 vocabulary, bf16
autocast, SDPA attention, fused AdamW, full batches of `--seq` tokens (no padding). Measured after warm-up
steps, with CUDA synchronised around the timed steps.

MFU = achieved model FLOPs / peak. Model FLOPs per token: 6·N + 12·L·d·T for full fine-tuning (forward
2N, backward 4N, attention scores); LoRA skips the frozen weights' gradients, 4·N + 12·L·d·T (adapter
FLOPs are negligible at r=16). Peak: `--peak-tflops`, else a table of dense bf16 peaks by device name.
QLoRA (4-bit NF4 base through bitsandbytes) is compared with LoRA on peak memory when bitsandbytes is
installed; otherwise the record says it was skipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0, "4090": 165.0}


def gpt2_medium(smoke: bool):
    from transformers import GPT2Config, GPT2LMHeadModel

    if smoke:
        cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=1024, vocab_size=50257)
    else:
        cfg = GPT2Config(n_layer=24, n_embd=1024, n_head=16, n_positions=1024, vocab_size=50257)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return GPT2LMHeadModel(cfg)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def train_rate(model, device, batch: int, seq: int, steps: int, warmup: int, lr: float) -> dict:
    """Tokens/s of plain training steps (bf16 autocast) on random token batches, after warm-up."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, fused=device.type == "cuda")
    vocab = model.config.vocab_size
    data = torch.randint(0, vocab, (steps + warmup, batch, seq), device=device)
    dtype = torch.bfloat16
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(x):
        with torch.autocast(device.type, dtype=dtype):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(data[i])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(data[i])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t
    return {
        "tokens_per_s": steps * batch * seq / seconds,
        "step_s": seconds / steps,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def model_flops_per_token(model, seq: int, full: bool) -> float:
    n = sum(p.numel() for n_, p in model.named_parameters() if "lora_" not in n_)
    c = model.config
    return (6 if full else 4) * n + 12 * c.n_layer * c.n_embd * seq


def lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True, task_type="CAUSAL_LM"))


def qlora_memory(smoke: bool, device, batch: int, seq: int, steps: int) -> dict:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return {"skipped": "bitsandbytes is not installed"}
    if device.type != "cuda":
        return {"skipped": "QLoRA needs CUDA"}
    import tempfile

    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig, GPT2LMHeadModel

    with tempfile.TemporaryDirectory() as tmp:
        gpt2_medium(smoke).save_pretrained(tmp)
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        model = GPT2LMHeadModel.from_pretrained(tmp, quantization_config=q, device_map={"": device.index or 0})
    model = lora(prepare_model_for_kbit_training(model, use_gradient_checkpointing=False))
    return train_rate(model, device, batch, seq, steps, 2, 1e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny shape, a few steps: checks the script runs (any device)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model first")
    a = ap.parse_args()
    if a.smoke:
        a.batch, a.seq, a.steps = 2, 32, 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = peak_tflops(device, a.peak_tflops)
    result: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "shape": "smoke" if a.smoke else "gpt2-medium (24 x 1024)",
        "batch": a.batch, "seq": a.seq, "steps": a.steps, "peak_tflops": peak, "compile": a.compile,
    }
    for name, full in (("full", True), ("lora", False)):
        model = gpt2_medium(a.smoke).to(device)
        if not full:
            model = lora(model)
        if a.compile:
            model = torch.compile(model)
        r = train_rate(model, device, a.batch, a.seq, a.steps, 1 if a.smoke else 3, 1e-4)
        r["model_flops_per_token"] = model_flops_per_token(model, a.seq, full)
        r["mfu"] = r["tokens_per_s"] * r["model_flops_per_token"] / (peak * 1e12) if peak else None
        result[name] = r
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result["qlora"] = qlora_memory(a.smoke, device, a.batch, a.seq, a.steps)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    for name in ("full", "lora", "qlora"):
        r = result[name]
        if "skipped" in r:
            print(f"{name:6s} skipped: {r['skipped']}")
        else:
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "n/a"
            print(f"{name:6s} {r['tokens_per_s']:>12,.0f} tokens/s  MFU {mfu}  peak memory {r['peak_memory_mb'] or 0:,.0f} MB")


if __name__ == "__main__":
    main()
