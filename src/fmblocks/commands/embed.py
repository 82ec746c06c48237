"""`fmblocks embed`: sentence embeddings from all-MiniLM-L6-v2 (or another local encoder).

    fmblocks embed "A man is eating food." "A man eats a meal."      one line of 384 numbers per text
    fmblocks embed "some text" --out embeddings.safetensors           tensor "embeddings" (N, 384)
    fmblocks embed --model DIR "some text"     DIR: a Hugging Face BERT / ESM-2 directory or an encoder run

Embeddings are mean-pooled over the real tokens and L2-normalised (cosine similarity = dot product).
"""

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed", help="sentence embeddings (all-MiniLM-L6-v2)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("texts", nargs="+", help="texts to embed")
    parser.add_argument("--out", type=Path, help="write the (N, D) embeddings to this .safetensors file")
    parser.add_argument("--model", type=Path,
                        help="a Hugging Face encoder directory (BERT, ESM-2) or an fmblocks encoder run; "
                             "default: the installed all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmblocks.files import write_tensors
    from fmblocks.models.pretrained import SentenceEmbedder, minilm, minilm_path
    from fmblocks.models.sources import open_model

    embedder = SentenceEmbedder(*open_model(args.model, arch="encoder")) if args.model else minilm()
    embeddings = embedder.embed(args.texts, batch_size=args.batch_size)
    if args.out:
        metadata = {"model": str(args.model or minilm_path()), "texts": json.dumps(args.texts, ensure_ascii=False)}
        write_tensors(args.out, {"embeddings": embeddings}, metadata=metadata)
        print(f"wrote embeddings {tuple(embeddings.shape)} to {args.out}")
        return 0
    for row in embeddings.tolist():
        print(" ".join(f"{value:.6f}" for value in row))
    return 0
