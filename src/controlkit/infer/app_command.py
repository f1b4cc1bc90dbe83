"""Serve a Gradio demo of a trained ControlNet: upload a photo or take one with the webcam, see its
landmarks, and generate images in the same pose, with their adherence scores. Binds to 127.0.0.1 unless
told otherwise."""

from __future__ import annotations

import argparse

from controlkit.infer.arguments import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument(
        "--share", action="store_true", help="also open a public gradio.live link (off by default)"
    )


def run(args: argparse.Namespace) -> int:
    from controlkit.infer.app import build_app, launch_app
    from controlkit.infer.pipeline import load_pipeline

    # Building the app checks gradio and the condition, so a bad flag fails before the model loads.
    demo = build_app(args.controlnet, args.base, condition=args.condition, device=args.device)
    print(f"loading {args.controlnet} ...")
    load_pipeline(args.controlnet, base=args.base, device=args.device)
    launch_app(demo, host=args.host, port=args.port, share=args.share)
    return 0
