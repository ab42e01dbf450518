"""ONNX export (fashionseg.export), the torch-free runtime (fashionseg.runtime), int8.

Exporting even a tiny model takes about a minute of CPU (torch.export + torch.onnx), so
the tests that export are marked slow and share one export per module; the bad-input
tests and the pipeline's own tests need none.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from helpers import one_line_error
from PIL import Image

from fashionseg.export import ExportError, export_checkpoint, parse_args
from fashionseg.model.semantic import SemanticModule
from fashionseg.model.semantic_pipeline import PhotoToLabels
from fashionseg.overlay import overlay_rgb
from fashionseg.runtime import ModelFileError, OnnxModel
from fashionseg.runtime.sidecar import sha256_of, sidecar_path

SIZES = [(60, 40), (40, 60), (33, 47), (400, 600)]  # H x W, odd and the dataset's


def tiny_semantic(arch: str = "lraspp_mobilenet_v3_large", tta: bool = True) -> SemanticModule:
    torch.manual_seed(0)
    net = {"arch": arch, "weights": "none", "min_size": 64, "max_size": 96, "tta_hflip": tta}
    return SemanticModule(task="clothing", net=net).eval()


def photos(sizes: list[tuple[int, int]] = SIZES, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def reference(module: SemanticModule, rgb: np.ndarray) -> np.ndarray:
    image = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32) / 255
    return module.predict_maps([image])[0].numpy()


def make_run(root: Path, module: SemanticModule) -> Path:
    """A run directory as training leaves it (checkpoint, split.json, composed config),
    its validation photos in ``root/data``; the checkpoint's path."""
    images = root / "data" / "images"
    images.mkdir(parents=True)
    for i, rgb in enumerate(photos([(48, 32), (40, 56), (64, 48)], seed=2)):
        Image.fromarray(rgb).save(images / f"v{i}.png")
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".hydra").mkdir()
    (run / "split.json").write_text(json.dumps({"val": ["v0", "v1", "v2"], "test": []}))
    (run / ".hydra" / "config.yaml").write_text(f"data:\n  root: {root / 'data'}\n")
    ckpt = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    return ckpt


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[SemanticModule, Path, Path]:
    """A tiny LRASPP with flip TTA, its checkpoint in a run directory, and its fp32 export."""
    root = tmp_path_factory.mktemp("export")
    module = tiny_semantic()
    ckpt = make_run(root, module)
    out = root / "model.onnx"
    export_checkpoint(ckpt, out)
    return module, ckpt, out


# --------------------------------------------------------------- no export needed
def test_the_module_runs_its_pipeline_and_the_exported_wrapper_is_predict_maps() -> None:
    module = tiny_semantic()
    rgb = photos()[:2]
    images = [torch.from_numpy(p).permute(2, 0, 1).to(torch.float32) / 255 for p in rgb]
    with torch.no_grad():
        for a, b in zip(module(images), module.pipeline(images), strict=True):
            assert torch.equal(a, b)
        wrapper = PhotoToLabels(module.pipeline)
        for p in rgb:
            labels = wrapper(torch.from_numpy(p))
            assert labels.dtype == torch.uint8 and labels.shape == p.shape[:2]
            assert np.array_equal(labels.numpy(), reference(module, p))


def test_numpy_overlay_is_torchvisions() -> None:
    from fashionseg.model.visualize import overlay
    from fashionseg.tasks import get_task

    colors = get_task("clothing").colors
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    labels = torch.randint(0, 7, (20, 30))
    expected = overlay(image, labels, colors).permute(1, 2, 0).numpy()
    got = overlay_rgb(image.permute(1, 2, 0).numpy(), labels.numpy(), colors)
    assert np.array_equal(got, expected)


def test_settings_are_checked_before_anything_is_loaded(tmp_path: Path) -> None:
    from fashionseg.cli import UsageError

    with pytest.raises(UsageError, match="out: not given"):
        parse_args(["ckpt=a.ckpt"])
    with pytest.raises(UsageError, match="not a setting"):
        parse_args(["ckpt=a.ckpt", "out=b.onnx", "quantise=int8"])
    with pytest.raises(UsageError, match="must end in .onnx"):
        export_checkpoint(tmp_path / "a.ckpt", tmp_path / "b.pt")
    with pytest.raises(UsageError, match="quantize=int4"):
        export_checkpoint(tmp_path / "a.ckpt", tmp_path / "b.onnx", quantize="int4")
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"a user's file")
    with pytest.raises(UsageError, match="exists; pass overwrite=true"):
        export_checkpoint(tmp_path / "a.ckpt", mine)
    assert mine.read_bytes() == b"a user's file"


def _foreign_graph(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A valid ONNX graph that is not ours: uint8 H x W x 3 -> itself."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("photo", TensorProto.UINT8, ["h", "w", 3])
    y = helper.make_tensor_value_info("labels", TensorProto.UINT8, ["h", "w", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["photo"], ["labels"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def _sidecar_for(graph: Path, **changes: object) -> None:
    sidecar = {
        "fashionseg_onnx": 1,
        "graph_sha256": sha256_of(graph),
        "task": "clothing",
        "class_names": ["background", "skin"],
        "colors": [[0, 0, 0], [128, 0, 0]],
        **changes,
    }
    sidecar_path(graph).write_text(json.dumps(sidecar))


def test_an_onnx_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    graph = _foreign_graph(tmp_path / "other.onnx")
    with pytest.raises(ModelFileError, match="not a fashionseg export .no sidecar other.json"):
        OnnxModel(graph)
    _sidecar_for(graph)
    with pytest.raises(ModelFileError, match="not a fashionseg graph"):
        OnnxModel(graph)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not protobuf at all")
    _sidecar_for(garbage)
    with pytest.raises(ModelFileError, match="not a graph onnxruntime can load"):
        OnnxModel(garbage)
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    Image.fromarray(photos()[0]).save(photo_dir / "a.png")
    line = one_line_error(
        "fashionseg.predict",
        f"ckpt={graph}",
        f"input={photo_dir}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=REPO_ROOT,
    )
    assert line.startswith(f"error: {graph}: not a fashionseg graph")
    assert not (tmp_path / "out").exists()


def test_a_sidecar_that_does_not_match_its_graph_is_refused(tmp_path: Path) -> None:
    graph = _foreign_graph(
        tmp_path / "g.onnx", {"fashionseg": "1", "task": "person", "num_classes": "2"}
    )
    _sidecar_for(graph, graph_sha256="0" * 64)
    with pytest.raises(ModelFileError, match="g.json: does not match its graph g.onnx"):
        OnnxModel(graph)
    _sidecar_for(graph)  # the right graph, but the label set of another task
    with pytest.raises(
        ModelFileError, match="sidecar does not match the graph .graph: task person"
    ):
        OnnxModel(graph)


# ---------------------------------------------------------------- exports (slow)
@pytest.mark.slow
def test_export_agrees_with_pytorch_and_describes_itself(
    exported: tuple[SemanticModule, Path, Path],
) -> None:
    import onnx

    module, ckpt, out = exported
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    model = OnnxModel(out)
    for rgb in photos(SIZES + [(17, 23), (1000, 700)], seed=5):
        labels = model(rgb)
        assert labels.dtype == np.uint8 and labels.shape == rgb.shape[:2]
        assert (labels == reference(module, rgb)).mean() >= 0.999
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["class_names"] == list(module.task.class_names)
    assert sidecar["colors"] == [list(c) for c in module.task.colors]
    assert sidecar["checkpoint"]["sha256"] == sha256_of(ckpt)
    assert sidecar["graph_sha256"] == sha256_of(out)
    assert sidecar["tta_hflip"] is True and sidecar["threshold"] is None
    assert sidecar["parity"]["photos"] == "3 validation photos"
    assert sidecar["parity"]["min_share"] >= 0.999
    assert sidecar["input"]["dtype"] == "uint8" and sidecar["quantize"] is None
    card = out.with_name("model_MODEL_CARD.md").read_text()  # the model card beside it
    assert all(name in card for name in module.task.class_names)


@pytest.mark.slow
def test_deeplabv3_exports_with_parity(tmp_path: Path) -> None:
    module = tiny_semantic("deeplabv3_mobilenet_v3_large", tta=False)
    ckpt = make_run(tmp_path, module)
    out = tmp_path / "deeplab.onnx"
    export_checkpoint(ckpt, out)
    model = OnnxModel(out)
    for rgb in photos():
        assert (model(rgb) == reference(module, rgb)).mean() >= 0.999


@pytest.mark.slow
def test_onnx_predict_imports_no_torch_and_keeps_predicts_rules(
    exported: tuple[SemanticModule, Path, Path], tmp_path: Path
) -> None:
    module, _, graph = exported
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    for i, rgb in enumerate(photos()[:3]):
        Image.fromarray(rgb).save(photo_dir / f"p{i}.png")
    out = tmp_path / "out"
    script = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None  # any import of torch fails\n"
        f"sys.argv = ['predict', 'ckpt={graph}', 'input={photo_dir}', 'output={out}',"
        f" 'hydra.run.dir={tmp_path / 'hydra'}']\n"
        "try:\n"
        "    runpy.run_module('fashionseg.predict', run_name='__main__')\n"
        "finally:\n"
        "    print('torch loaded:', [m for m in sys.modules if m.startswith('torch.')])\n"
    )

    def predict() -> str:
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "torch loaded: []" in proc.stdout
        return proc.stdout

    assert "3 predicted, 0 already done" in predict()
    for i, rgb in enumerate(photos()[:3]):
        written = np.asarray(Image.open(out / f"p{i}.png"))
        assert (written == reference(module, rgb)).mean() >= 0.999
        assert (out / f"p{i}_overlay.jpg").is_file()
    assert "0 predicted, 3 already done" in predict()  # resume: nothing redone
    (out / "notes.txt").write_text("mine")
    line = one_line_error(
        "fashionseg.predict",
        f"ckpt={graph}",
        f"input={photo_dir}",
        f"output={out}",
        "overwrite=true",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=REPO_ROOT,
    )
    assert "holds files predict did not write (notes.txt)" in line
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_the_demo_page_serves_an_export_like_a_checkpoint(
    exported: tuple[SemanticModule, Path, Path],
) -> None:
    from fashionseg.demo import DemoModel, OnnxDemoModel, legend_html
    from fashionseg.model.checkpoint import load_module
    from fashionseg.runtime import OnnxModel
    from fashionseg.serve import parse_args

    _, ckpt, graph = exported
    assert parse_args([f"ckpt={graph}"])["ckpt"] == str(graph)
    page, reference = OnnxDemoModel(graph), DemoModel(load_module(ckpt))
    assert page.task.class_names == reference.task.class_names
    assert page.methods == () and not page.uses_threshold(None)
    assert "argmax" in page.describe() and graph.name in page.describe()
    for rgb in photos():
        labels = page.label_map(page.run(rgb))
        assert labels.shape == rgb.shape[:2]
        assert (labels == OnnxModel(graph)(rgb)).all()
        assert (labels == reference.label_map(reference.run(rgb))).mean() >= 0.999
    for name in page.task.class_names:
        assert name in legend_html(page.task)


def test_segmenter_runs_an_export_as_its_sidecar_describes_it(tmp_path: Path) -> None:
    """The fast set's check of the ONNX path of ``Segmenter`` (its parity with the
    checkpoint, on a real export, is the slow test below): a hand-made graph of ours,
    photo -> its red channel as labels, with its sidecar."""
    import onnx
    from onnx import TensorProto, helper

    from fashionseg import Segmenter

    graph = _foreign_graph(
        tmp_path / "red.onnx", {"fashionseg": "1", "task": "clothing", "num_classes": "2"}
    )
    model = onnx.load(graph)
    model.graph.initializer.append(helper.make_tensor("channel", TensorProto.INT64, [], [0]))
    model.graph.node[0].CopyFrom(
        helper.make_node("Gather", ["photo", "channel"], ["labels"], axis=2)
    )
    model.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("labels", TensorProto.UINT8, ["h", "w"])
    )
    onnx.save(model, graph)
    _sidecar_for(graph)
    rng = np.random.default_rng(3)
    rgb = [rng.integers(0, 2, (h, w, 3), dtype=np.uint8) for h, w in ((9, 7), (5, 12))]
    segmenter = Segmenter.from_checkpoint(graph)
    assert segmenter.task.class_names == ("background", "skin") and segmenter.threshold is None
    for labels, photo in zip(segmenter(rgb), rgb, strict=True):
        assert labels.dtype == torch.uint8 and labels.numpy().tolist() == photo[..., 0].tolist()
    with pytest.raises(ValueError, match="not 'person'"):
        Segmenter.from_checkpoint(graph, task="person")


@pytest.mark.slow
def test_segmenter_loads_an_export_like_a_checkpoint(
    exported: tuple[SemanticModule, Path, Path],
) -> None:
    from fashionseg import Segmenter

    _, ckpt, graph = exported
    rgb = photos()[:2]
    from_graph = Segmenter.from_checkpoint(graph)
    from_ckpt = Segmenter.from_checkpoint(ckpt)
    assert from_graph.task.class_names == from_ckpt.task.class_names
    assert from_graph.threshold is None
    for a, b in zip(from_graph(rgb), from_ckpt(rgb), strict=True):
        assert a.dtype == torch.uint8 and (a == b).float().mean() >= 0.999
    with pytest.raises(ValueError, match="not 'person'"):
        Segmenter.from_checkpoint(graph, task="person")


@pytest.mark.slow
def test_a_graph_beside_another_graphs_sidecar_is_refused(
    exported: tuple[SemanticModule, Path, Path], tmp_path: Path
) -> None:
    _, _, graph = exported
    copy = tmp_path / "copy.onnx"
    shutil.copy(graph, copy)
    _foreign_graph(tmp_path / "other.onnx")
    shutil.copy(sidecar_path(graph), sidecar_path(tmp_path / "other.onnx"))
    with pytest.raises(ModelFileError, match="does not match its graph other.onnx"):
        OnnxModel(tmp_path / "other.onnx")
    with pytest.raises(ModelFileError, match="no sidecar copy.json"):
        OnnxModel(copy)


@pytest.mark.slow
def test_int8_calibrates_on_the_validation_photos_and_runs(
    exported: tuple[SemanticModule, Path, Path], tmp_path: Path
) -> None:
    import onnx

    module, ckpt, _ = exported
    out = tmp_path / "int8.onnx"
    sidecar = export_checkpoint(ckpt, out, quantize="int8", calibration=2)
    assert sidecar["quantize"] == "int8" and sidecar["calibration_photos"] == 2
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    model = OnnxModel(out)
    for rgb in photos()[:2]:
        labels = model(rgb)
        assert labels.dtype == np.uint8 and labels.shape == rgb.shape[:2]
        assert labels.max() < module.task.num_classes
    lone = tmp_path / "lone.ckpt"
    shutil.copy(ckpt, lone)  # a checkpoint outside its run: no validation photos
    with pytest.raises(ExportError, match="calibrates on the run's validation photos"):
        export_checkpoint(lone, tmp_path / "lone.onnx", quantize="int8")


@pytest.mark.slow
def test_bench_export_times_three_runtimes_and_scores_the_test_photos(tmp_path: Path) -> None:
    from conftest import write_tiny_dataset

    from fashionseg.bench.export import SIDES, export_benchmark, format_export_report

    data = write_tiny_dataset(tmp_path / "data", num_images=4, width=40, height=30)
    ckpt = make_run(tmp_path / "scratch", tiny_semantic(tta=False))
    run = ckpt.parent.parent
    (run / "split.json").write_text(json.dumps({"val": ["000", "001"], "test": ["002", "003"]}))
    (run / ".hydra" / "config.yaml").write_text(f"data:\n  root: {data}\n")
    result = export_benchmark(
        ckpt, size=(64, 48), photos=1, rounds=2, warmup=0, calibration=2, data_root=data
    )
    assert set(result["photos_per_s"]) == set(SIDES)
    assert all(r["n"] == 2 and r["median"] > 0 for r in result["photos_per_s"].values())
    scores = result["scores"]
    assert scores["test_photos"] == 2 and set(scores["miou"]) == set(SIDES)
    assert scores["agreement"]["ort_fp32"]["min"] >= 0.999
    assert "ort_int8" in format_export_report(result)


def test_an_unreadable_checkpoint_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fashionseg.export import main

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main([f"ckpt={tmp_path / 'missing.ckpt'}", f"out={tmp_path / 'a.onnx'}"]) == 2
    assert main([f"ckpt={bad}", f"out={tmp_path / 'b.onnx'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"error: {tmp_path / 'missing.ckpt'}: checkpoint not found"
    assert lines[1].startswith(f"error: {bad}: ")  # read_checkpoint says why
    assert len(lines) == 2 and not list(tmp_path.glob("*.onnx"))
