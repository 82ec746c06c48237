"""`fmblocks explain`: open the transformer explainer on this machine (http://127.0.0.1:8765).

    fmblocks explain                          # the built-in character-level model (shipped, opens at once)
    fmblocks explain --checkpoint runs/lm     # any decoder, encoder or encoder-decoder run of `fmblocks train`
    fmblocks explain --checkpoint runs/mnist/classifier   # a ViT: MNIST digits as patch tokens
    fmblocks explain --model DIR              # a model directory like the built-in one

The page shows the model's architecture, a tokenizer playground, the embeddings, the attention of
every layer and head (and one query step by step), the feed-forward units, the logit lens, the
next-token probabilities under the temperature / top-k / top-p controls, and sampled continuations.
The server listens on the loopback interface only (127.0.0.1, ::1 or localhost); stop it with Ctrl-C.
The address is taken before the model loads, so a busy port or a public --host fails at once.
"""

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("explain", help="look inside a decoder in the browser", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a run directory (decoder, encoder, encoder-decoder or ViT; default: the built-in model)")
    parser.add_argument("--model", type=Path, help="a model directory as `python -m fmblocks.explainer.default "
                        "--build --out DIR` writes it (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("--text", help="the text the page opens with")
    parser.add_argument("--source", default="", help="an encoder-decoder's source text the page opens with")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.set_defaults(func=run)


def load_for_explainer(path: Path):
    """(model, tokenizer) of a run: a ViT's tokenizer is None (it reads images, e.g. `fmblocks mnist`'s
    classifier/); other kinds need their tokenizer.json; kinds the explainer cannot show are refused."""
    from fmblocks.errors import ConfigError
    from fmblocks.explainer.analysis import KINDS
    from fmblocks.training.checkpoint import load_checkpoint
    from fmblocks.training.runs import load_run

    model, config, _ = load_checkpoint(path)
    if config.arch == "vit":
        return model, None
    if config.arch not in KINDS:
        raise ConfigError(f"{path}: the explainer shows {', '.join(KINDS)} and vit models, not {config.arch}")
    return load_run(path)[0::2]


def run(args: argparse.Namespace) -> int:
    from fmblocks.errors import ConfigError
    from fmblocks.explainer.default import DEFAULT_TEXT, default_model, load_model_dir
    from fmblocks.explainer.server import Explainer, ExplainerServer

    server = ExplainerServer(args.host, args.port)
    try:
        if args.checkpoint and args.model:
            raise ConfigError("pass --checkpoint or --model, not both")
        if args.checkpoint:
            model, tokenizer = load_for_explainer(args.checkpoint)
        elif args.model:
            model, tokenizer = load_model_dir(args.model)
        else:
            model, tokenizer = default_model()
        text = args.text if args.text is not None else ("" if args.checkpoint or args.model else DEFAULT_TEXT)
        server.explainer = Explainer(model, tokenizer, default_text=text, default_source=args.source)
        print(f"fmblocks explainer: {server.url}  (Ctrl-C stops it)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
