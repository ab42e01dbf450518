"""LightningDataModule: checked files, a reproducible train/val/test split, loaders."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch import distributed as dist
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler

from fashionseg.data.dataset import FashionDataset
from fashionseg.data.io import DataError, MaskRules, check_dataset, find_samples, raise_problems
from fashionseg.data.roots import (
    EpochWeightedSampler,
    ExtraRoot,
    check_weight,
    parse_extra_roots,
    photo_weights,
    root_problem,
    sampler_seed,
)
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

    ``extra_roots`` (paths, or ``{root, weight}`` mappings: :mod:`fashionseg.data.roots`)
    are datasets of the same task whose photos all join the training split only; then the
    training loader draws ``epoch_photos`` photos per epoch (None: as many as there are
    training photos over all roots) with replacement, each root's share of the draws
    proportional to its weight (the labelled root's: ``labelled_weight``). Without extra
    roots the training loader shuffles the labelled training split as it always has.
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
        extra_roots: Sequence[Any] | None = None,
        labelled_weight: float = 1.0,
        epoch_photos: int | None = None,
    ) -> None:
        super().__init__()
        label_set = get_task(task)
        check_instances(instances, "data.instances")
        split = check_ratios(split)
        extras = parse_extra_roots(extra_roots)
        labelled_weight = check_weight("data.labelled_weight", labelled_weight)
        if epoch_photos is not None and (
            isinstance(epoch_photos, bool) or not isinstance(epoch_photos, int) or epoch_photos < 1
        ):
            raise DataError(
                f"data.epoch_photos={epoch_photos!r}: must be a whole number >= 1 or null"
            )
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
                "extra_roots": [e.to_config() for e in extras],
                "labelled_weight": labelled_weight,
                "epoch_photos": epoch_photos,
            }
        )
        self.root = Path(root)
        self.task = label_set
        self.extra_roots: list[ExtraRoot] = extras
        self.split_stems: dict[str, list[str]] = {}
        self.extra_stems: list[list[str]] = []  # each extra root's stems, sorted
        self._datasets: dict[str, Dataset] = {}

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
        self.extra_stems = [
            self._check_extra(i, extra, rules) for i, extra in enumerate(self.extra_roots)
        ]

    def _check_extra(self, index: int, extra: ExtraRoot, rules: MaskRules) -> list[str]:
        """The sorted stems of an extra root, after checking all its files as the labelled
        root's are (its masks may hold ``ignore_index`` pixels)."""
        problems = check_dataset(extra.root, self.task, rules)
        if problems:
            raise DataError(root_problem(problems, index, extra, self.task.name))
        return [s.stem for s in find_samples(extra.root, self.task)]

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
        if self.extra_roots:  # training-only photos of other roots (absent: none)
            data["extra"] = [
                {**extra.to_config(), "resolved": str(extra.resolved), "stems": stems}
                for extra, stems in zip(self.extra_roots, self.extra_stems, strict=True)
            ]
        return write_json(path, data)

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (train | val | test | all); train is augmented unless
        ``augment`` is false (scoring a checkpoint on its training photos) and is the only
        split whose items carry Mask R-CNN instances (``masks``/``boxes``/``labels``): the
        others are scored on their label maps (``semantic``) alone. With extra roots, train
        is a ConcatDataset: the labelled training split, then each extra root's photos
        (items with ``root``, image ids after the labelled root's)."""
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
            settings = (hp.instances, hp.min_area, transforms, hp.ignore_index, hp.binary_255)
            train = split == "train"
            dataset: Dataset = FashionDataset(
                self.root, self.task, self.split_stems[split], *settings, with_instances=train
            )
            if train and self.extra_roots:
                parts, offset = [dataset], len(self.split_stems["all"])
                for extra, stems in zip(self.extra_roots, self.extra_stems, strict=True):
                    parts.append(
                        FashionDataset(
                            extra.root,
                            self.task,
                            stems,
                            *settings,
                            id_offset=offset,
                            source=extra.root,
                        )
                    )
                    offset += len(stems)
                dataset = ConcatDataset(parts)
            self._datasets[split] = dataset
        return self._datasets[split]

    def train_sampler(self) -> EpochWeightedSampler | None:
        """The training loader's weighted sampler with extra roots (None without)."""
        if not self.extra_roots:
            return None
        sizes = [len(self.split_stems["train"]), *map(len, self.extra_stems)]
        weights = [self.hparams.labelled_weight, *(e.weight for e in self.extra_roots)]
        draws = self.hparams.epoch_photos or sum(sizes)
        return EpochWeightedSampler(photo_weights(sizes, weights), draws, sampler_seed())

    def dataloader(self, split: str) -> DataLoader:
        """A loader over ``split``; only train shuffles (or, with extra roots, draws by
        weight: :meth:`train_sampler`)."""
        hp = self.hparams
        train = split == "train"
        dataset = self.dataset(split)
        # evaluation: each photo once on whichever rank (see EvalSampler)
        sampler = self.train_sampler() if train else EvalSampler(dataset)
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            shuffle=train and sampler is None,
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
