"""bench.json → Markdown tables (printed, and pasted into benchmarks/speed/README.md)."""

from __future__ import annotations

from typing import Any

PARTS = [
    # (bench.json key, row title, rate unit, ctrldial's side, baseline key, speedup key, agreement key)
    ("train", "training (non-pad tokens/s)", "tokens_per_s", "ctrldial", "hf_trainer", "train_speedup", None),
    ("train", "training at ctrldial's default precision", "tokens_per_s", "ctrldial_auto", "hf_trainer", "train_speedup_auto", None),
    ("generate", "generation (responses/s)", "responses_per_s", "ctrldial", "hf_per_example", "generate_speedup", "identical_share"),
    ("score", "scoring (utterances/s)", "utterances_per_s", "ctrldial", "hf_pipeline", "score_speedup", "same_label_share"),
]
VARIANTS = {
    "hf_generate_batched": "generation: Hugging Face `generate` on left-padded batches",
    "ctrldial_bf16_autocast": "generation: ctrldial under bf16 autocast",
}


def _speedup(r: dict[str, Any], key: str) -> str:
    """The median ratio, with the min–max over the pairs of runs (older files: the ratio alone)."""
    q = r.get("ratios", {}).get(key)
    if q is None or len(q["runs"]) < 2:
        return f"{r[key]:.2f}×"
    return f"{q['median']:.2f}× [{q['min']:.2f}–{q['max']:.2f}]"


def _precision(r: dict[str, Any], side: str) -> str:
    p = r["train"].get("precision", {}).get(side)
    pad = r["train"][side].get("padding_share")
    return ", ".join(x for x in (p, None if pad is None else f"{100 * pad:.0f}% padding") if x)


def format_table(r: dict[str, Any]) -> str:
    """The speed table (one row per part measured, then the generation variants) and the memory table."""
    rows = ["| part | ctrldial | Hugging Face baseline | speedup (median [min–max]) | agreement |", "|---|---:|---:|---:|---:|"]
    for key, title, unit, ours, base, ratio, agree in PARTS:
        if key in r and ours in r[key] and ratio in r:
            p = r[key]
            note = "" if agree is None else f"{100 * p[agree]:.1f}% identical"
            if key == "train" and "precision" in p:
                title += f" ({_precision(r, ours)} vs {_precision(r, base)})"
            rows.append(f"| {title} | {p[ours][unit]:.1f} | {p[base][unit]:.1f} | {_speedup(r, ratio)} | {note} |")
    for name, v in r.get("generate", {}).get("variants", {}).items():
        base = r["generate"]["hf_per_example"]["responses_per_s"]
        rows.append(f"| {VARIANTS.get(name, name)} | {v['responses_per_s']:.1f} | {base:.1f} | "
                    f"{v['responses_per_s'] / base:.2f}× | {100 * v['identical_share']:.1f}% identical |")
    g = r.get("generate", {}).get("guidance")
    if g:
        rows.append(f"| generation: classifier-free guided (γ = {g['guidance_scale']:g}, null label) | {g['guided']['responses_per_s']:.1f} | "
                    f"{g['unguided']['responses_per_s']:.1f} (ctrldial unguided) | guided costs {g['guidance_overhead']:.2f}× | |")
    text = "\n".join(rows)
    lim = r.get("generate", {}).get("limit")
    if lim:
        text += (f"\n\nGeneration's compute-bound limit: {lim['gflops_per_response']:.2f} GFLOP per response "
                 f"({lim['prefill_tokens']} distinct prefill + {lim['generated_tokens']} generated tokens × 2 × {lim['matmul_params'] / 1e6:.0f}M weights); "
                 f"fp32 matmul peak {lim['peak_gflops_square']:.0f} GFLOP/s (square) and {lim['peak_gflops_decode_shaped']:.0f} GFLOP/s "
                 f"(decode-shaped) allow {lim['limit_responses_per_s']:.1f} and {lim['limit_responses_per_s_decode_shaped']:.1f} responses/s; "
                 f"measured {lim['measured_responses_per_s']:.1f} = {100 * lim['share_of_limit']:.0f}% and "
                 f"{100 * lim['share_of_decode_shaped_limit']:.0f}% of them")
    if "cpu_bf16" in r:
        env = r["environment"]
        text += (f"\n\nMachine: {env.get('cpu')}, {env.get('cpu_count')} cores, bf16 native: {r['cpu_bf16']}, "
                 f"{env.get('torch_threads')} threads, load {env['load_average_start'][0]:.2f} → {env['load_average_end'][0]:.2f}")
    if "memory" in r:
        text += "\n\n" + memory_table(r["memory"])
    return text


def memory_table(memory: dict[str, Any]) -> str:
    mem = ["| method | trainable params | trainable % | peak RSS (MB) | RSS after load (MB) |", "|---|---:|---:|---:|---:|"]
    for name, m in memory.items():
        if "error" in m:
            mem.append(f"| {name} | failed: {m['error']} | | | |")
        else:
            mem.append(f"| {name} | {m['trainable_params']:,} | {m['trainable_percent']:.3f} | {m['peak_rss_mb']:.0f} | {m['rss_after_load_mb']:.0f} |")
    return "\n".join(mem)
