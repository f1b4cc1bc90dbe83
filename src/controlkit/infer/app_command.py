"""Serve a Gradio demo of a trained ControlNet: upload a photo or take one with the webcam, see what the
ControlNet's condition finds in it, and generate images that follow it, with their adherence scores.
Binds to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse

from controlkit import flags
from controlkit.infer.config import AppConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, AppConfig)


def run(args: argparse.Namespace) -> int:
    from controlkit.infer.app import AppHandlers, build_app, launch_app

    config = flags.from_namespace(AppConfig, args)
    # Building the app checks the ControlNet, the condition and gradio, so a bad flag fails before the
    # model loads.
    handlers = AppHandlers(config)
    demo = build_app(handlers)
    print(f"loading {config.controlnet} ...")
    handlers.load_pipeline()
    launch_app(demo, host=config.host, port=config.port, share=config.share)
    return 0
