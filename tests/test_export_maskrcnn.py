"""ONNX export of the Mask R-CNN family (fashionseg.export, DetectionPhotoToLabels).

Two tiny untrained detectors are exported once each (module-scoped, about 20 s apiece):
a Mask R-CNN whose threshold keeps its detections, and a Panoptic FPN with flip TTA
whose threshold keeps none of them (its label maps are the semantic head's). Each graph
labels photos of two sizes (one graph: the size is dynamic) as ``predict_maps`` does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TINY_NET

from fashionseg.export import PARITY_MIN, export_checkpoint
from fashionseg.model.detection_pipeline import ExactResizeTransform
from fashionseg.model.module import MaskRCNNModule
from fashionseg.runtime import OnnxModel

# H x W: two sizes through one graph; 97 x 130 is one that torchvision's traced resize
# (float32) makes a pixel smaller than its eager resize
SIZES = [(97, 130), (50, 77)]


def tiny_detector(panoptic: bool) -> MaskRCNNModule:
    torch.manual_seed(0)
    net = {**TINY_NET, "min_size": 64, "max_size": 96}
    if panoptic:  # threshold 0.5: an untrained detector's scores (about 0.15) are all below
        net = {**net, "semantic_head": True, "tta_hflip": True}
        module = MaskRCNNModule(task="clothing", net=net, fusion={"method": "panoptic"})
        # an untrained head's logits (std 0.01) nearly tie everywhere, so float rounding
        # would pick the argmax; spread them as a trained head's are
        with torch.no_grad():
            module.net.semantic_head.predictor.weight.normal_(0, 20.0)
        return module.eval()
    return MaskRCNNModule(task="clothing", net=net, threshold=0.1).eval()


def reference(module: MaskRCNNModule, rgb: np.ndarray) -> np.ndarray:
    image = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32) / 255
    return module.predict_maps([image])[0].numpy()


def photos(seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def test_the_graphs_resize_is_torchvisions_eager_resize_bit_for_bit() -> None:
    module = tiny_detector(panoptic=False)
    theirs = module.net.transform
    ours = ExactResizeTransform.like(theirs).eval()
    assert type(module.net.transform) is not ExactResizeTransform  # the module's is untouched
    sizes = [(h, w) for h in range(20, 200, 7) for w in range(20, 200, 11)] + [(600, 400)]
    for height, width in sizes:
        image = torch.rand(3, height, width)
        assert torch.equal(ours.resize(image)[0], theirs.resize(image)[0]), (height, width)


@pytest.fixture(scope="module", params=[False, True], ids=["maskrcnn", "panoptic"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A tiny detector, its export (fp32) and the sidecar export_checkpoint returned."""
    root = tmp_path_factory.mktemp("export_maskrcnn")
    module = tiny_detector(request.param)
    ckpt = root / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    out = root / "model.onnx"
    sidecar = export_checkpoint(ckpt, out, parity_photos=2)
    return module, out, sidecar


@pytest.mark.slow
def test_the_graph_labels_photos_of_two_sizes_as_pytorch_does(exported) -> None:  # noqa: ANN001
    module, out, sidecar = exported
    assert sidecar["parity"]["min_share"] >= PARITY_MIN
    model = OnnxModel(out)
    kept = []
    for rgb in photos():
        want = reference(module, rgb)
        got = model(rgb)
        assert got.shape == rgb.shape[:2] and got.dtype == np.uint8
        assert (got == want).mean() >= PARITY_MIN
        image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            scores = module.net([image])[0]["scores"]
        kept.append(int((scores > module.score_threshold).sum()))
        assert len(np.unique(want)) > 1  # a label map with something in it, not all one class
    if module.has_semantic_head:
        assert kept == [0, 0]  # no detection above threshold: the semantic head's labels
    else:
        assert min(kept) > 0  # detections kept, pasted and fused inside the graph


@pytest.mark.slow
def test_the_sidecar_describes_the_detector(exported) -> None:  # noqa: ANN001
    module, _, sidecar = exported
    panoptic = module.has_semantic_head
    assert sidecar["family"] == ("panoptic" if panoptic else "maskrcnn")
    assert sidecar["fusion"] == ("panoptic" if panoptic else "seed")
    assert sidecar["threshold"] == (0.5 if panoptic else 0.1)
    assert sidecar["tta_hflip"] is panoptic
    assert sidecar["resize"] == {"min_size": 64, "max_size": 96}
    assert sidecar["max_detections"] == 100


@pytest.mark.slow
def test_segmenter_runs_the_exported_detector(exported) -> None:  # noqa: ANN001
    from fashionseg.segmenter import Segmenter

    module, out, _ = exported
    rgb = photos(seed=4)[1]
    got = Segmenter.from_checkpoint(out)(rgb)
    assert (np.asarray(got) == reference(module, rgb)).mean() >= PARITY_MIN
