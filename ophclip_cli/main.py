"""The `ophclip` command line: its parser and entry point."""

import argparse
import sys

from .common import CLIError, DEFAULT_TEMPLATE
from .saliency import cmd_attention
from .search import cmd_embed, cmd_search
from .zero_shot import OOD_REFERENCE_FILE, cmd_ood_reference, cmd_zero_shot


def cmd_app(args) -> int:
    from .app import cmd_app as run_app  # gradio is imported only when the app starts

    return run_app(args)


def cmd_convert(args) -> int:
    from modeling_ophclip.convert import main as convert_main

    return convert_main(args.convert_args)


def _add_common(parser, overwrite_help="Replace the output if it exists."):
    parser.add_argument("--model", required=True, metavar="DIR_OR_ID",
                        help="OphCLIP folder (saved with save_pretrained, with its processor) or Hub id.")
    parser.add_argument("--device", metavar="DEVICE", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: cuda if available, else cpu).")
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)


def _add_label_options(parser, required: bool):
    """The classes to compare frames with: `--labels`, `--labels-file` or `--benchmark` (one of them), and
    `--template` (read by `zero_shot.parse_labels`)."""
    labels = parser.add_mutually_exclusive_group(required=required)
    labels.add_argument("--labels", metavar="A,B,C", help="Comma-separated class names.")
    labels.add_argument("--labels-file", metavar="FILE", help="Text file with one class name per line ('#' comments).")
    labels.add_argument("--benchmark", metavar="NAME",
                        help="Use the classes and prompts of a registered evaluate_suite benchmark, in its default "
                             "prompt mode (one sentence per class on the real datasets, the ensemble on OphVL-mini; "
                             "e.g. cataract-1k-phase); --template is then ignored.")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE,
                        help=f"Prompt each label is written into; must contain '{{}}' (default: {DEFAULT_TEMPLATE!r}).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ophclip",
        description="OphCLIP video-language model for ophthalmic surgery: zero-shot recognition, embeddings, "
                    "text-to-moment search, saliency maps and checkpoint conversion.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    zs = sub.add_parser(
        "zero-shot", help="Per-second (or per-window) zero-shot class probabilities of one video.",
        description="Classify every sampled frame of VIDEO against text labels (CLIP-style softmax over the scaled "
                    "cosine similarities); with --window, average the frame probabilities over windows. The video "
                    "is decoded in batches, never whole.",
    )
    zs.add_argument("video", metavar="VIDEO", help="Video file to classify.")
    _add_common(zs, "Replace --output / --timeline if they exist.")
    _add_label_options(zs, required=True)
    zs.add_argument("--fps", type=float, default=1.0, help="Frames classified per second of video (default: 1).")
    zs.add_argument("--window", type=float, default=None, metavar="SECONDS",
                    help="Average frame probabilities over windows of this many seconds (default: one row per frame).")
    zs.add_argument("--output", required=True, metavar="OUT.csv|OUT.json",
                    help="Predictions: CSV (start, end, label, score, prob_<class>...) or JSON.")
    zs.add_argument("--timeline", metavar="OUT.png", help="Also draw the predicted class over time as a PNG.")
    zs.add_argument("--batch-size", type=int, default=32, help="Frames decoded and embedded at once (default: 32).")
    zs.add_argument("--ood-reference", metavar="FILE",
                    help="Out-of-domain reference made by `ophclip ood-reference` (default: the model folder's "
                         f"{OOD_REFERENCE_FILE} when there is one); the signal is printed and written to JSON output.")
    zs.set_defaults(func=cmd_zero_shot)

    od = sub.add_parser(
        "ood-reference", help="Make the out-of-domain reference of a model from in-domain videos.",
        description="Embed the frames of in-domain videos (e.g. a benchmark's training split) and write the "
                    "statistics that `ophclip zero-shot` and `ophclip app` compare a new video with: the in-domain "
                    "frame embeddings' per-dimension mean and spread with the 99th percentile of the frames' own "
                    "distances to them, and (with class labels) the 5th percentile of how well a frame's best prompt "
                    "matches. Save it as "
                    f"{OOD_REFERENCE_FILE} in the model folder to have it used by default.",
    )
    od.add_argument("inputs", nargs="+", metavar="INPUT", help="In-domain video files, or folders searched for videos.")
    _add_common(od, "Replace --output if it exists.")
    _add_label_options(od, required=False)  # with labels, the reference adds the text statistic
    od.add_argument("--fps", type=float, default=1.0, help="Frames embedded per second of video (default: 1).")
    od.add_argument("--batch-size", type=int, default=32, help="Frames decoded and embedded at once (default: 32).")
    od.add_argument("--output", required=True, metavar="OUT.json", help="The reference (JSON).")
    od.set_defaults(func=cmd_ood_reference)

    em = sub.add_parser(
        "embed", help="One L2-normalised embedding per video.",
        description="Embed each video (frames sampled uniformly, frame embeddings averaged, projected and "
                    "L2-normalised) and save them with their paths.",
    )
    em.add_argument("inputs", nargs="+", metavar="INPUT", help="Video files, or folders searched for videos.")
    _add_common(em, "Replace --output if it exists.")
    em.add_argument("--output", required=True, metavar="OUT.safetensors|OUT.parquet",
                    help="safetensors: tensor 'embeddings' (N, D), metadata 'paths'/'keys' as JSON lists; "
                         "parquet: columns key, path, embedding.")
    em.add_argument("--num-frames", type=int, default=8, help="Frames sampled per video (default: 8).")
    em.set_defaults(func=cmd_embed)

    se = sub.add_parser(
        "search", help="Find the moments of a video collection that best match a text query.",
        description="Embed the frames sampled at --fps of every video under --videos, rank them by inner product "
                    "of L2-normalised embeddings with the query (exact) and print the best matches. Unreadable "
                    "videos are skipped with a warning.",
    )
    se.add_argument("query", metavar="QUERY", help="Text to search for.")
    _add_common(se, "Replace --output if it exists.")
    se.add_argument("--videos", required=True, metavar="FOLDER", help="Folder searched (recursively) for videos.")
    se.add_argument("--fps", type=float, default=1.0, help="Frames indexed per second of video (default: 1).")
    se.add_argument("--top-k", type=int, default=5, help="Number of moments returned (default: 5).")
    se.add_argument("--index-cache", metavar="DIR",
                    help="Folder that caches each video's frame embeddings (keyed by video, model and fps).")
    se.add_argument("--output", metavar="OUT.json|OUT.csv", help="Also write the results to a file.")
    se.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    se.add_argument("--batch-size", type=int, default=32, help="Frames decoded and embedded at once (default: 32).")
    se.set_defaults(func=cmd_search)

    at = sub.add_parser(
        "attention", help="Text-conditioned saliency maps on frames, as PNG overlays.",
        description="Where in the frame does the model see TEXT? ResNet towers: Grad-CAM of the frame-text cosine "
                    "similarity on the last stage; ViT (CLIP vision) towers: gradient-weighted attention rollout.",
    )
    at.add_argument("input", metavar="VIDEO_OR_IMAGE", help="Video file, or an image (.png/.jpg/...).")
    _add_common(at, "Write into --output-dir even if it is not empty.")
    at.add_argument("--text", required=True, help="Text the saliency is computed for.")
    at.add_argument("--output-dir", required=True, metavar="DIR", help="Folder for the PNG overlays.")
    at.add_argument("--frames", type=int, default=4, help="Frames sampled uniformly from a video (default: 4).")
    at.add_argument("--alpha", type=float, default=0.5, help="Opacity of the heat map (default: 0.5).")
    at.set_defaults(func=cmd_attention)

    cv = sub.add_parser(
        "convert", help="Convert a SurgVLP/HecVL/PeskaVLP checkpoint (same options as ophclip-convert).",
        description="Runs ophclip-convert with the remaining arguments; see `ophclip convert --help`.",
        add_help=False,
    )
    cv.add_argument("convert_args", nargs=argparse.REMAINDER, help="Arguments of ophclip-convert.")
    cv.set_defaults(func=cmd_convert)

    ap = sub.add_parser(
        "app", help="The web app: phase timelines, text search and saliency maps in the browser (Gradio).",
        description="Serve the OphCLIP web app (needs the `app` extra: pip install \"ophclip[app]\"): upload a video "
                    "or pick an example, see its zero-shot phase timeline, search it by text and draw saliency "
                    "maps. Runs offline on the CPU.",
    )
    ap.add_argument("--model", default=None, metavar="DIR_OR_ID",
                    help="OphCLIP folder or Hub id (default: ophclip-demo/model, what `make demo` writes).")
    ap.add_argument("--device", metavar="DEVICE", default=None, help="torch device (default: cuda if available).")
    ap.add_argument("--examples", metavar="DIR", default=None,
                    help="An OphVL-mini benchmark folder whose videos are offered as examples, with their labels "
                         "(default: ophclip-demo/ophvl-mini/benchmark when it exists).")
    ap.add_argument("--ood-reference", metavar="FILE", default=None,
                    help=f"Out-of-domain reference (default: the model folder's {OOD_REFERENCE_FILE}, else one "
                         "computed at start from the examples' training videos).")
    ap.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: 127.0.0.1).")
    ap.add_argument("--port", type=int, default=7860, help="Port to listen on (default: 7860; 0 picks a free one).")
    ap.add_argument("--max-duration", type=float, default=3600.0, metavar="SECONDS",
                    help="Longest video accepted (default: 3600).")
    ap.add_argument("--max-pixels", type=int, default=3840 * 2160, metavar="N",
                    help="Largest frame (width x height) accepted (default: 3840x2160).")
    ap.add_argument("--batch-size", type=int, default=32, help="Frames decoded and embedded at once (default: 32).")
    ap.set_defaults(func=cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ophclip` console command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "convert":  # every option, --help included, belongs to ophclip-convert
        from modeling_ophclip.convert import main as convert_main

        return convert_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as error:
        message = " ".join(str(error).split())
    except (ValueError, OSError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
    print(f"ophclip {args.command}: error: {message}", file=sys.stderr)
    return 1
