"""A local web page to try a checkpoint on one's own photo (Gradio: the ``demo`` extra).

    python -m fashionseg.serve ckpt=RUN/checkpoints/last.ckpt [port=7860] [host=127.0.0.1]

Drop or pick a photo (the run's own test photos are offered as examples) and the page
shows the overlay, the label map, a legend with every class's name and colour and each
class's share of the photo. For a Mask R-CNN a slider starting at the validated score
threshold (and, where the model has them, a switch for its per-class thresholds)
re-labels the photo without running the network again; a choice of fusion too (all
five with Panoptic FPN's semantic head). A file that is not a readable photo gives a
one-line message on the page; the server goes on serving.

The page listens on 127.0.0.1 (this computer only) unless ``host=`` says otherwise:
``host=0.0.0.0`` lets every machine that can reach this one use it, with no login.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashionseg.cli import UsageError, user_errors

DEFAULTS = {"ckpt": None, "port": "7860", "host": "127.0.0.1", "device": "cpu"}
ERROR_PREFIX = "error: "


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``key=value`` arguments -> settings (ckpt, port, host, device); UsageError otherwise."""
    settings: dict[str, Any] = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise UsageError(
                f"{arg}: expected key=value with key one of {', '.join(DEFAULTS)} "
                "(python -m fashionseg.serve ckpt=CKPT [port=7860] [host=127.0.0.1])"
            )
        settings[key] = value
    if not settings["ckpt"]:
        raise UsageError("ckpt=: give the checkpoint to serve, e.g. ckpt=RUN/checkpoints/last.ckpt")
    try:
        port = int(settings["port"])
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise UsageError(f"port={settings['port']}: must be a whole number from 1 to 65535")
    settings["port"] = port
    return settings


def _require_gradio() -> Any:
    try:
        import gradio as gr
    except ImportError:
        raise UsageError(
            "the demo page needs Gradio: pip install -e '.[demo]' (or pip install gradio)"
        ) from None
    return gr


def build_app(model: Any, examples: Sequence[Path] = ()) -> Any:
    """The Gradio page (``gr.Blocks``) for a :class:`fashionseg.demo.DemoModel`."""
    gr = _require_gradio()
    from fashionseg.data.photo import DataError
    from fashionseg.demo import class_shares, colour_labels, legend_html, overlay_photo, read_upload

    task = model.task
    threshold = model.threshold

    def show(raw: Any, method: str | None, value: float | None, per_class: bool) -> tuple:
        label_map = model.label_map(raw, method, value, per_class)
        shares = class_shares(label_map, task.num_classes)
        height, width = label_map.shape
        note = f"{width} x {height} photo labelled"
        if model.is_instance_model:
            used = "per-class thresholds" if per_class and model.class_thresholds else value
            note += f" (fusion {method or model.method}, threshold {used})"
        return (
            overlay_photo(raw.rgb, label_map, task),
            colour_labels(label_map, task),
            legend_html(task, shares),
            note,
        )

    def segment(path: str | None, method: str | None, value: float | None, per_class: bool):
        if not path:
            return None, None, None, legend_html(task), "", None
        try:
            rgb = read_upload(path)
        except DataError as err:
            name = Path(path).name
            message = ERROR_PREFIX + str(err).replace(str(path), name).splitlines()[0]
            return None, None, None, legend_html(task), message, None
        raw = model.run(rgb)
        return (rgb, *show(raw, method, value, per_class), raw)

    def relabel(raw: Any, method: str | None, value: float | None, per_class: bool):
        if raw is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return show(raw, method, value, per_class)

    with gr.Blocks(title="fashionseg demo") as app:
        gr.Markdown(f"## fashionseg: try it on your photo\n{model.describe()}")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="photo (drop or click)", type="filepath", elem_id="upload")
                method = gr.Dropdown(
                    list(model.methods) or ["argmax"],
                    value=model.method or "argmax",
                    label="fusion",
                    visible=bool(model.methods),
                    elem_id="fusion",
                )
                slider = gr.Slider(
                    0.0,
                    1.0,
                    value=threshold if threshold is not None else 0.5,
                    step=0.01,
                    label=f"score threshold (validated: {threshold})",
                    visible=model.uses_threshold(None),
                    elem_id="threshold",
                )
                per_class = gr.Checkbox(
                    value=bool(model.class_thresholds),
                    label="validated per-class thresholds (the slider applies when off)",
                    visible=bool(model.class_thresholds),
                    elem_id="per_class",
                )
                message = gr.Markdown("", elem_id="message")
                legend = gr.HTML(legend_html(task), elem_id="legend")
            with gr.Column(scale=2):
                photo = gr.Image(
                    label="photo as read", type="numpy", format="jpeg", interactive=False
                )
                with gr.Row():
                    shown = gr.Image(
                        label="overlay", type="numpy", format="jpeg", elem_id="overlay"
                    )
                    labels = gr.Image(
                        label="label map", type="numpy", format="png", elem_id="labelmap"
                    )
        state = gr.State(None)
        settings = [method, slider, per_class]
        upload.change(
            segment,
            [upload, *settings],
            [photo, shown, labels, legend, message, state],
        )
        for control in (method, per_class):
            control.change(relabel, [state, *settings], [shown, labels, legend, message])
        slider.change(
            relabel,
            [state, *settings],
            [shown, labels, legend, message],
            trigger_mode="always_last",
        )
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=[upload], label="test photos")
    return app


def serve(settings: dict[str, Any]) -> None:
    """Load the checkpoint and serve the page until interrupted."""
    ckpt = Path(settings["ckpt"])
    if not ckpt.is_file():  # said at once, before Gradio, torch and the model are imported
        what = "exported model" if ckpt.suffix.lower() == ".onnx" else "checkpoint"
        raise UsageError(f"{ckpt}: {what} not found")
    _require_gradio()
    from fashionseg.demo import DemoModel, OnnxDemoModel, example_photos
    from fashionseg.model.checkpoint import load_module

    if Path(settings["ckpt"]).suffix.lower() == ".onnx":  # an export (fashionseg.export)
        model: DemoModel | OnnxDemoModel = OnnxDemoModel(settings["ckpt"])
        examples: list[Path] = []
    else:
        model = DemoModel(load_module(settings["ckpt"]).to(settings["device"]))
        examples = example_photos(settings["ckpt"])
    app = build_app(model, examples)
    allowed = sorted({str(p.parent) for p in examples})
    where = settings["host"]
    if where not in ("127.0.0.1", "localhost", "::1"):
        print(f"serving on {where}: anyone who can reach this machine can use the page")
    app.queue(default_concurrency_limit=1).launch(
        server_name=where,
        server_port=settings["port"],
        allowed_paths=allowed,
        share=False,
        show_error=False,
    )


@user_errors
def run(argv: Sequence[str]) -> None:
    """Check the arguments (one ``error:`` line, exit 2), then serve; ``--help``: usage."""
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    serve(parse_args(argv))


def main() -> None:
    """Command-line entry point."""
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
