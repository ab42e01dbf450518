"""LightningDataModule: checked files, a reproducible train/val/test split, loaders."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch import distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fashionseg.data.dataset import FashionDataset
from fashionseg.data.io import DataError, MaskRules, check_dataset, find_samples, raise_problems
from fashionseg.data.split import check_ratios
from fashionseg.data.targets import check_instances
from fashionseg.data.transforms import build_train_transforms
from fashionseg.files import write_json
from fashionseg.tasks import Task, get_task

SPLITS = ("train", "val", "test")


class EvalSampler(DistributedSampler):
    """Every photo of an evaluation split exactly once, over however many processes there
    are *when it is iterated* (rank ``r`` of ``n`` takes photos ``r, r + n, ...``).

    Lightning's own DistributedSampler pads a split that does not divide by repeating
    photos (3 photos on 2 ranks: one scored twice), and a loader built before the
    process group exists (``evaluate`` under ``ddp_spawn``) cannot know its rank.
    Being a DistributedSampler, Lightning leaves it in place; outside a multi-process
    run it yields every photo in order.
    """

    def __init__(self, dataset: Dataset) -> None:  # no super().__init__: no group needed
        self.dataset = dataset
        self.epoch, self.seed, self.shuffle, self.drop_last = 0, 0, False, False

    @staticmethod
    def _group() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return self._group()[0]

    @property
    def rank(self) -> int:  # type: ignore[override]
        return self._group()[1]

    def _indices(self) -> range:
        world, rank = self._group()
        return range(rank, len(self.dataset), world)  # type: ignore[arg-type]

    def __iter__(self):  # noqa: ANN204
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def collate(batch: list[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    """Batches as lists of images and targets, as torchvision detection models take them."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def make_split(stems: Sequence[str], ratios: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Deterministic train/val/test split of ``stems``.

    The sorted stems are shuffled with ``random.Random(seed)``; train takes the first
    ``round(r_train * n)``, val the next ``round(r_val * n)``, test the rest. DataError when
    the ratios do not sum to 1 or leave a split empty.
    """
    ratios = check_ratios(ratios)
    order = sorted(stems)
    random.Random(seed).shuffle(order)
    n_train = round(ratios[0] * len(order))
    n_val = round(ratios[1] * len(order))
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    empty = [name for name, part in parts.items() if not part]
    if empty:
        raise DataError(
            f"data.split {ratios} leaves the {'/'.join(empty)} split empty with {len(order)} images"
        )
    return parts


def read_manifest(path: str | Path, known: set[str] | None = None) -> dict[str, list[str]]:
    """The train/val/test stems of a manifest written by ``write_manifest``.

    DataError (naming the file) for a missing or malformed manifest, a stem listed twice,
    or (when ``known`` is given) a stem that is not in the dataset.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        parts = {name: [str(s) for s in data[name]] for name in SPLITS}
    except FileNotFoundError:
        raise DataError(f"{path}: split manifest not found") from None
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise DataError(f"{path}: not a split manifest ({reason})") from None
    seen: set[str] = set()
    for name in SPLITS:
        for stem in parts[name]:
            if stem in seen:
                raise DataError(f"{path}: stem {stem!r} is listed twice")
            seen.add(stem)
    if known is not None:
        missing = [s for name in SPLITS for s in parts[name] if s not in known]
        if missing:
            raise DataError(
                f"{path}: stem {missing[0]!r} is not in the dataset "
                f"({len(missing)} listed stem(s) missing: {', '.join(missing[:5])})"
            )
    return parts


class FashionDataModule(L.LightningDataModule):
    """The dataset at ``root`` for one task, split 50/10/40 by default.

    ``setup`` checks every file before any training step (all problems in one error),
    then splits deterministically from ``seed`` or reproduces a run's ``manifest``
    (``split.json``). ``generate`` (a dict of :func:`fashionseg.data.synthetic.generate`
    arguments) fills an empty ``root`` with synthetic data first. ``ignore_index`` (the
    mask value no loss or metric counts; None: none) and ``binary_255`` (True: 255 is the
    person in 0/255 masks) say how masks are read: :class:`fashionseg.data.io.MaskRules`.
    """

    def __init__(
        self,
        root: str,
        task: str | Mapping[str, Any] | Task = "person",
        split: Sequence[float] = (0.5, 0.1, 0.4),
        seed: int = 0,
        manifest: str | None = None,
        instances: str = "class",
        min_area: int = 0,
        ignore_index: int | None = 255,
        binary_255: bool | None = None,
        hflip: float = 0.0,
        scale_jitter: Sequence[float] | None = None,
        color_jitter: float = 0.0,
        hue_jitter: float = 0.0,
        crop: Sequence[float] | None = None,
        augment: bool = True,
        batch_size: int = 10,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        generate: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        label_set = get_task(task)
        check_instances(instances, "data.instances")
        split = check_ratios(split)
        MaskRules(ignore_index, binary_255).check(label_set)
        scale_jitter = [float(s) for s in scale_jitter] if scale_jitter else None
        crop = [float(s) for s in crop] if crop else None
        generate = dict(generate) if generate else None
        self.save_hyperparameters(
            {
                "root": str(root),
                # the whole label set, as the model's hyper-parameter ``task`` holds it
                "task": label_set.to_config(),
                "split": split,
                "seed": int(seed),
                "manifest": str(manifest) if manifest else None,
                "instances": instances,
                "min_area": int(min_area),
                "ignore_index": ignore_index,
                "binary_255": binary_255,
                "hflip": float(hflip),
                "scale_jitter": scale_jitter,
                "color_jitter": float(color_jitter),
                "hue_jitter": float(hue_jitter),
                "crop": crop,
                "augment": bool(augment),
                "batch_size": int(batch_size),
                "eval_batch_size": int(eval_batch_size) if eval_batch_size else None,
                "num_workers": int(num_workers),
                "pin_memory": bool(pin_memory),
                "persistent_workers": bool(persistent_workers),
                "generate": generate,
            }
        )
        self.root = Path(root)
        self.task = label_set
        self.split_stems: dict[str, list[str]] = {}
        self._datasets: dict[str, FashionDataset] = {}

    def prepare_data(self) -> None:
        """Generate synthetic data into ``root`` when it has no images/ and ``generate`` is set."""
        if self.hparams.generate and not (self.root / "images").is_dir():
            from fashionseg.data.synthetic import generate

            generate(self.root, **self.hparams.generate)

    def setup(self, stage: str | None = None) -> None:
        """Check every file, then split (once; later calls reuse the split)."""
        if self.split_stems:
            return
        self.prepare_data()
        rules = MaskRules(self.hparams.ignore_index, self.hparams.binary_255)
        raise_problems(
            check_dataset(self.root, self.task, rules), f"{self.root} (task {self.task.name})"
        )
        stems = [s.stem for s in find_samples(self.root, self.task)]
        if self.hparams.manifest:
            self.split_stems = read_manifest(self.hparams.manifest, set(stems))
        else:
            self.split_stems = make_split(stems, self.hparams.split, self.hparams.seed)
        self.split_stems["all"] = sorted(stems)

    def write_manifest(self, path: str | Path) -> Path:
        """Save the split (stems per split) as JSON; give it back as ``manifest``."""
        if not self.split_stems:
            self.setup()
        data = {
            "task": self.task.name,
            "seed": self.hparams.seed,
            "split": self.hparams.split,
        }
        data.update({name: self.split_stems[name] for name in SPLITS})
        return write_json(path, data)

    def dataset(self, split: str) -> FashionDataset:
        """The dataset of ``split`` (train | val | test | all); train is augmented unless
        ``augment`` is false (scoring a checkpoint on its training photos) and is the only
        split whose items carry Mask R-CNN instances (``masks``/``boxes``/``labels``): the
        others are scored on their label maps (``semantic``) alone."""
        if split not in (*SPLITS, "all"):
            raise ValueError(f"unknown split {split!r}: choose one of train, val, test, all")
        if not self.split_stems:
            self.setup()
        if split not in self._datasets:
            hp = self.hparams
            transforms = None
            if split == "train" and hp.augment:
                transforms = build_train_transforms(
                    hp.hflip, hp.scale_jitter, hp.color_jitter, hp.hue_jitter, hp.crop
                )
            self._datasets[split] = FashionDataset(
                self.root,
                self.task,
                self.split_stems[split],
                hp.instances,
                hp.min_area,
                transforms,
                hp.ignore_index,
                hp.binary_255,
                with_instances=split == "train",
            )
        return self._datasets[split]

    def dataloader(self, split: str) -> DataLoader:
        """A loader over ``split``; only train shuffles."""
        hp = self.hparams
        train = split == "train"
        dataset = self.dataset(split)
        # evaluation: each photo once on whichever rank (see EvalSampler)
        sampler = None if train else EvalSampler(dataset)
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            shuffle=train,
            sampler=sampler,
            num_workers=hp.num_workers,
            pin_memory=hp.pin_memory,
            persistent_workers=hp.persistent_workers and hp.num_workers > 0,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train")

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.dataloader("test")
