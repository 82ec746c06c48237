"""Benchmark: generation tokens/s of the gpt2-style decoder, with vs without the KV cache, vs HF generate.

One gpt2-style decoder (GPT-2 vocabulary and block layout, reduced width/depth so that the uncached
runs finish) generates `n` new tokens greedily after a 16-token prompt, batch 1, float32, on one CPU
thread:
    cached     fmblocks generate(use_cache=True): the prompt once, then one token per step
    uncached   fmblocks generate(use_cache=False): the whole sequence again at every step
    hf         transformers GPT2LMHeadModel.generate (its own KV cache) with the same weights
tokens/s = n / time; the time is the process CPU time (one thread, so it equals the compute time and
is robust to other load on the machine); the wall time is recorded too. Each figure is the best of
`repeats` runs (the uncached 1024-token run once). Greedy tokens of all three are compared.
Writes bench/results/generation.json and generation.png.

    .venv/bin/python -m bench.generation [--lengths 256 1024] [--repeats 3] [--d-model 256 --layers 4]
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from fmblocks.files import atomic_writer, write_json  # noqa: E402
from fmblocks.generation import generate  # noqa: E402
from fmblocks.models import build_model, preset  # noqa: E402
from fmblocks.models.pretrained import gpt2_state_dict  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = 16
METHODS = ("cached", "uncached", "hf")


def timed(fn) -> tuple[torch.Tensor, float, float]:
    """(result, CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def build_pair(d_model: int, layers: int, heads: int, max_len: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = preset("gpt2-style", d_model=d_model, n_layers=layers, n_heads=heads, d_ff=4 * d_model, max_len=max_len)
    ours = build_model(config).eval()
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=config.vocab_size, n_positions=max_len, n_embd=d_model, n_layer=layers, n_head=heads,
        n_inner=4 * d_model, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=config.eps, tie_word_embeddings=True)).eval()
    hf.load_state_dict(gpt2_state_dict(ours))
    return ours, hf


def run_method(method: str, ours, hf, prompt: torch.Tensor, n: int) -> torch.Tensor:
    if method == "hf":
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, pad_token_id=0, eos_token_id=None)
    return generate(ours, prompt, n, temperature=0.0, use_cache=method == "cached")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ours, hf = build_pair(args.d_model, args.layers, args.heads, PROMPT + max(args.lengths))
    prompt = torch.randint(0, ours.config.vocab_size, (1, PROMPT))
    run_method("cached", ours, hf, prompt, 8), run_method("hf", ours, hf, prompt, 8)  # warm-up

    rows = []
    jobs = [(n, m) for n in args.lengths for m in METHODS]
    for n, method in tqdm(jobs, desc="generation"):
        repeats = 1 if method == "uncached" and n > 256 else args.repeats
        runs = [timed(lambda: run_method(method, ours, hf, prompt, n)) for _ in range(repeats)]
        tokens = runs[0][0]
        cpu, wall = min(r[1] for r in runs), min(r[2] for r in runs)
        rows.append({"new_tokens": n, "method": method, "cpu_s": cpu, "wall_s": wall, "tokens_per_s": n / cpu,
                     "tokens": tokens[0, PROMPT:].tolist()})
    summary = {}
    for n in args.lengths:
        by = {r["method"]: r for r in rows if r["new_tokens"] == n}
        agree = [sum(a == b for a, b in zip(by["cached"]["tokens"], by[m]["tokens"])) / n for m in ("uncached", "hf")]
        summary[str(n)] = {
            "cache_speedup": by["cached"]["tokens_per_s"] / by["uncached"]["tokens_per_s"],
            "vs_hf": by["cached"]["tokens_per_s"] / by["hf"]["tokens_per_s"],
            "tokens_per_s": {m: by[m]["tokens_per_s"] for m in METHODS},
            "greedy_agreement": {"uncached": agree[0], "hf": agree[1]},
        }
        print(f"{n} new tokens: " + ", ".join(f"{m} {by[m]['tokens_per_s']:.1f} tok/s" for m in METHODS)
              + f"; cache speedup {summary[str(n)]['cache_speedup']:.1f}x, vs HF {summary[str(n)]['vs_hf']:.2f}x")
    for row in rows:
        del row["tokens"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    setup = {"model": {"preset": "gpt2-style", "d_model": args.d_model, "n_layers": args.layers, "n_heads": args.heads,
                       "vocab_size": ours.config.vocab_size}, "prompt": PROMPT, "batch": 1, "threads": 1,
             "dtype": "float32", "decoding": "greedy", "torch": torch.__version__}
    write_json(RESULTS / "generation.json", {"setup": setup, "rows": rows, "summary": summary}, fmt="fmblocks-bench")
    plot(rows, args.lengths)


def plot(rows: list[dict], lengths: list[int]) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        values = [next(r["tokens_per_s"] for r in rows if r["method"] == method and r["new_tokens"] == n) for n in lengths]
        bars = ax.bar([x + i * width for x in range(len(lengths))], values, width, label=method)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks([x + width for x in range(len(lengths))], [f"{n} new tokens" for n in lengths])
    ax.set_yscale("log")
    ax.set_ylabel("tokens / s (CPU, 1 thread)")
    ax.set_title("gpt2-style generation: KV cache vs none vs HF generate")
    ax.legend(ncols=len(METHODS), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    with atomic_writer(RESULTS / "generation.png") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
