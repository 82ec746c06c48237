"""`fmblocks explain`: open the transformer explainer on this machine (http://127.0.0.1:8765).

    fmblocks explain                          # the built-in character-level model (shipped, opens at once)
    fmblocks explain --checkpoint runs/lm     # any decoder or encoder run written by `fmblocks train`

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
    parser.add_argument("--checkpoint", type=Path, help="a decoder or encoder run directory (default: the built-in model)")
    parser.add_argument("--text", help="the text the page opens with")
    parser.add_argument("--source", default="", help="an encoder-decoder's source text the page opens with")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmblocks.explainer.default import DEFAULT_TEXT, default_model
    from fmblocks.explainer.analysis import check_kind
    from fmblocks.explainer.server import Explainer, ExplainerServer
    from fmblocks.training.runs import load_run

    server = ExplainerServer(args.host, args.port)
    try:
        if args.checkpoint:
            model, _, tokenizer = load_run(args.checkpoint)
            check_kind(model)
        else:
            model, tokenizer = default_model()
        text = args.text if args.text is not None else (DEFAULT_TEXT if not args.checkpoint else "")
        server.explainer = Explainer(model, tokenizer, default_text=text, default_source=args.source)
        print(f"fmblocks explainer: {server.url}  (Ctrl-C stops it)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
