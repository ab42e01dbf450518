"""Extra training roots (data.extra_roots): training-only photos, weighted draws, checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, one_line_error, run
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

from fashionseg.data.datamodule import FashionDataModule, collate
from fashionseg.data.io import DataError
from fashionseg.data.roots import EpochWeightedSampler, parse_extra_roots, photo_weights
from fashionseg.data.synthetic import generate
from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.tasks import get_task


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A labelled root of 20 photos and a pseudo-labelled one of 6 whose stems collide
    with the labelled root's (0000..0005), the left quarter of every mask ignored."""
    work = tmp_path_factory.mktemp("roots")
    labelled = generate(work / "labelled", num_images=20, seed=1, height=32, width=24)
    pseudo = generate(work / "pseudo", num_images=6, seed=2, height=32, width=24)
    task = get_task("clothing")
    for path in sorted((pseudo / task.mask_dir).glob("*.png")):
        with Image.open(path) as mask:
            ids, palette = np.array(mask), mask.getpalette()
        ids[:, :6] = 255  # data.ignore_index: a low-confidence strip
        img = Image.fromarray(ids, mode="P")  # a palette PNG, as pseudo_label writes them
        img.putpalette(palette)
        img.save(path)
    return {"work": work, "labelled": labelled, "pseudo": pseudo}


def module(roots: dict[str, Path], **kwargs: object) -> FashionDataModule:
    dm = FashionDataModule(root=str(roots["labelled"]), task="clothing", **kwargs)
    dm.setup("fit")
    return dm


def test_extra_photos_are_training_data_only(roots: dict[str, Path], tmp_path: Path) -> None:
    plain = module(roots)
    dm = module(roots, extra_roots=[{"root": str(roots["pseudo"]), "weight": 0.5}])
    # the labelled root's split is exactly the one without extra roots
    assert {k: dm.split_stems[k] for k in ("train", "val", "test", "all")} == plain.split_stems
    written = json.loads(dm.write_manifest(tmp_path / "split.json").read_text())
    assert [written[k] for k in ("train", "val", "test")] == [
        plain.split_stems[k] for k in ("train", "val", "test")
    ]
    assert written["extra"] == [
        {
            "root": str(roots["pseudo"]),
            "weight": 0.5,
            "resolved": str(roots["pseudo"].resolve()),
            "stems": [f"{i:04d}" for i in range(6)],
        }
    ]
    # stems collide across roots: val/test items all come from the labelled root
    for split in ("val", "test"):
        items = [dm.dataset(split)[i][1] for i in range(len(dm.dataset(split)))]
        assert all("root" not in t for t in items)
        assert [t["stem"] for t in items] == plain.split_stems[split]
    train = dm.dataset("train")
    assert len(train) == 10 + 6
    targets = [train[i][1] for i in range(len(train))]
    extra = [t for t in targets if t.get("root") == str(roots["pseudo"])]
    assert [t["stem"] for t in extra] == [f"{i:04d}" for i in range(6)]
    ids = [int(t["image_id"]) for t in targets]
    assert len(set(ids)) == len(ids) and min(int(t["image_id"]) for t in extra) == 20
    # the record: hyper-parameters (so checkpoints) and read_manifest of the new file
    assert dm.hparams.extra_roots == [{"root": str(roots["pseudo"]), "weight": 0.5}]
    again = module(roots, manifest=str(tmp_path / "split.json"))
    assert {k: again.split_stems[k] for k in ("train", "val", "test")} == {
        k: plain.split_stems[k] for k in ("train", "val", "test")
    }


def test_without_extra_roots_the_train_order_is_todays(roots: dict[str, Path]) -> None:
    dm = module(roots, extra_roots=[], batch_size=1)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, RandomSampler) and dm.train_sampler() is None
    torch.manual_seed(7)
    stems = [targets[0]["stem"] for _, targets in loader]
    # today's loader: the labelled training split, shuffled
    today = DataLoader(
        module(roots).dataset("train"), batch_size=1, shuffle=True, collate_fn=collate
    )
    torch.manual_seed(7)
    assert stems == [targets[0]["stem"] for _, targets in today]
    assert sorted(stems) == sorted(dm.split_stems["train"]) and stems != dm.split_stems["train"]


def test_roots_get_shares_proportional_to_their_weights() -> None:
    sizes, weights = [10, 30, 5], [1.0, 2.0, 1.0]
    per_photo = photo_weights(sizes, weights)
    assert per_photo.shape == (45,) and float(per_photo.sum()) == pytest.approx(4.0)
    sampler = EpochWeightedSampler(per_photo, 20_000, seed=3)
    sampler.set_epoch(0)
    draws = list(sampler)
    root_of = [0] * 10 + [1] * 30 + [2] * 5
    shares = Counter(root_of[i] for i in draws)
    for root, expected in enumerate((0.25, 0.5, 0.25)):
        assert shares[root] / len(draws) == pytest.approx(expected, abs=0.02)
    # within a root every photo is about equally likely (with replacement: repeats)
    assert len(set(draws)) == 45
    assert list(sampler) == draws  # the same epoch draws the same list (ranks, resume)
    sampler.set_epoch(1)
    assert list(sampler) != draws


def test_the_train_loader_draws_epoch_photos_by_weight(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "5")
    extra = [{"root": str(roots["pseudo"]), "weight": 3.0}]
    dm = module(roots, extra_roots=extra, labelled_weight=1.0, epoch_photos=4000)
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, EpochWeightedSampler) and len(sampler) == 4000
    from_extra = sum(i >= 10 for i in sampler) / 4000  # items 10.. are the extra root's
    assert from_extra == pytest.approx(0.75, abs=0.03)
    assert module(roots, extra_roots=extra).train_sampler().num_samples == 16


def test_under_ddp_lightnings_wrapper_deals_one_list_out_to_the_ranks(
    roots: dict[str, Path],
) -> None:
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler

    dm = module(roots, extra_roots=[str(roots["pseudo"])], epoch_photos=40)
    loader = dm.train_dataloader()
    ranks = [
        _get_distributed_sampler(loader, True, 0, num_replicas=2, rank=r, seed=0) for r in (0, 1)
    ]
    dealt = []
    for wrapper in ranks:
        _set_sampler_epoch(DataLoader(loader.dataset, sampler=wrapper), 3)
        dealt.append(list(wrapper))
    assert [len(d) for d in dealt] == [20, 20]
    loader.sampler.set_epoch(3)
    assert Counter(dealt[0] + dealt[1]) == Counter(loader.sampler)  # one list, split


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("some/dir", r"data\.extra_roots='some/dir': must be a list of folders"),
        ([{"root": "a", "weight": 0}], r"data\.extra_roots\[0\]\.weight=0: must be a number > 0"),
        ([{"root": "a", "wieght": 2}], r"data\.extra_roots\[0\]: unknown key\(s\) wieght"),
        (["a", {"weight": 2}], r"data\.extra_roots\[1\]: needs root: DIR"),
    ],
)
def test_bad_extra_root_entries(entries: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_extra_roots(entries)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message):
        FashionDataModule(root="unused", extra_roots=entries)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_ignored_pixels_stay_ignored_through_augmentation(roots: dict[str, Path]) -> None:
    """Extra-root items: 255 stays 255 through flip/crop/rescale, lies in no instance, and
    gives the semantic model's cross-entropy no gradient."""
    extra = [str(roots["pseudo"])]
    augment = {"hflip": 1.0, "crop": [0.8, 0.9], "scale_jitter": [1.5, 2.0]}
    dm = module(roots, extra_roots=extra, **augment)
    train = dm.dataset("train")
    torch.manual_seed(0)
    for index in range(10, 16):  # the pseudo-labelled photos
        image, target = train[index]
        semantic = target["semantic"]
        assert semantic.shape == image.shape[1:]
        ignored = semantic == IGNORE_INDEX
        assert ignored.any() and set(semantic.unique().tolist()) <= set(range(7)) | {255}
        assert ignored[:, -3:].all()  # flipped: the left strip is now on the right
        assert not target["masks"][:, ignored].any()
    from fashionseg.model.semantic import SemanticModule

    # at about the photos' own size (the default min_size of 400 made this test 3 s of CPU)
    net = {"arch": "lraspp_mobilenet_v3_large", "weights": "none", "min_size": 48, "max_size": 64}
    model = SemanticModule(task="clothing", net=net)
    logits: list[torch.Tensor] = []

    def keep(_module: object, _inputs: object, output: dict) -> None:
        output["out"].retain_grad()
        logits.append(output["out"])

    model.net.register_forward_hook(keep)
    images, targets = collate([train[i] for i in range(10, 13)])
    model.training_step((images, targets), 0).backward()
    _, y, _ = model._batch(images, [t["semantic"] for t in targets])
    grad = logits[0].grad.abs().sum(1)
    assert (y == IGNORE_INDEX).any() and (grad[y == IGNORE_INDEX] == 0).all()
    assert (grad[y != IGNORE_INDEX] > 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["missing", "bad_mask"])
def test_a_bad_extra_root_is_a_one_line_error(
    roots: dict[str, Path], tmp_path: Path, problem: str
) -> None:
    extra = tmp_path / "extra"
    if problem == "bad_mask":
        generate(extra, num_images=2, seed=4, height=32, width=24)
        mask = extra / "clothes" / "0001.png"
        ids = np.array(Image.open(mask))
        ids[0, 0] = 9  # no class 9 in the clothing task, and not ignore_index
        Image.fromarray(ids.astype(np.uint8), mode="L").save(mask)
    last = one_line_error(
        "fashionseg.train",
        "task=clothing",
        f"data.root={roots['labelled']}",
        f"data.extra_roots=[{extra}]",
        f"hydra.run.dir={tmp_path / 'run'}",
        "train=false",
        "test=false",
        *TINY,
        cwd=tmp_path,
    )
    expected = {
        "missing": f"error: {extra}: dataset directory not found (data.extra_roots[0])",
        "bad_mask": f"error: {mask if problem == 'bad_mask' else ''}: class id 9 out of range "
        "for task 'clothing' (ids 0..6, 255 = ignored; found [9]) (data.extra_roots[0])",
    }[problem]
    assert last == expected


@pytest.mark.slow
def test_a_tiny_run_with_an_extra_root_and_ema_records_both(
    roots: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    extra = f"data.extra_roots=[{{root: {roots['pseudo']}, weight: 2}}]"
    run(
        "fashionseg.train",
        "task=clothing",
        f"data.root={roots['labelled']}",
        extra,
        "data.epoch_photos=8",
        "callbacks.ema.decay=0.9",
        f"hydra.run.dir={run_dir}",
        *TINY,
        "trainer.max_epochs=1",
        cwd=tmp_path,
    )
    split = json.loads((run_dir / "split.json").read_text())
    assert [e["stems"] for e in split["extra"]] == [[f"{i:04d}" for i in range(6)]]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    data = ckpt["datamodule_hyper_parameters"]
    assert data["extra_roots"] == [{"root": str(roots["pseudo"]), "weight": 2.0}]
    assert ckpt["global_step"] == 4  # 8 draws, batches of 2
    assert "current_model_state" in ckpt  # the state_dict is the average
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert f"extra training root: `{roots['pseudo']}` (weight 2.0): 6 photos" in card
    assert "weight averaging: EMA, decay 0.9" in card
    assert json.loads((run_dir / "metrics.json").read_text())["miou"] is not None
