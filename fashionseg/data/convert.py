"""Import annotations into the project's layout: one command, one sub-command per format.

    python -m fashionseg.data.convert coco --json FILE --images DIR --out ROOT --task NAME
        [--map FILE.yaml] [--unmapped background] [--skip-empty] [--person] [--link]
        [--config-dir DIR]
    python -m fashionseg.data.convert labelme --src DIR --out ROOT --task NAME [...same]
    python -m fashionseg.data.convert ccp --src CCP_CHECKOUT --out DIR [...]

``--task`` names the label set the masks are written for: a task name
(``conf/task/NAME.yaml``, or ``DIR/task/NAME.yaml`` with ``--config-dir DIR``) or a task
YAML file; its ``mask_dir`` is the mask folder. Bad input: one ``error:`` line naming
the file and the problem, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fashionseg.data.annotations import UNMAPPED, ConversionError, read_map_file
from fashionseg.tasks import TaskError, resolve_task


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output dataset folder")
    parser.add_argument("--task", required=True, help="label set: a task name or a task YAML file")
    parser.add_argument("--config-dir", type=Path, help="a config folder holding task/NAME.yaml")
    parser.add_argument("--map", type=Path, help="YAML file: category name -> class name")
    parser.add_argument(
        "--unmapped",
        choices=UNMAPPED,
        default="error",
        help="a category that maps to no class: an error (default) or background",
    )
    parser.add_argument(
        "--skip-empty", action="store_true", help="leave out photos without annotations"
    )
    parser.add_argument("--person", action="store_true", help="also write person/ (the union)")
    parser.add_argument("--link", action="store_true", help="symlink the photos, not copy")


def parser() -> argparse.ArgumentParser:
    """The command line: ``coco``, ``labelme`` and ``ccp`` sub-commands."""
    main_parser = argparse.ArgumentParser(
        prog="python -m fashionseg.data.convert", description=__doc__.split("\n\n")[0]
    )
    sub = main_parser.add_subparsers(dest="format", required=True)
    coco = sub.add_parser("coco", help="a COCO instances JSON (polygons, RLE)")
    coco.add_argument("--json", required=True, type=Path, help="COCO annotation file")
    coco.add_argument("--images", required=True, type=Path, help="folder of its file_names")
    _common(coco)
    labelme = sub.add_parser("labelme", help="a folder of LabelMe JSON files")
    labelme.add_argument("--src", required=True, type=Path, help="folder of LabelMe *.json")
    _common(labelme)
    sub.add_parser("ccp", help="a Clothing Co-Parsing checkout (python -m fashionseg.data.ccp)")
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ccp"]:
        from fashionseg.data import ccp

        return ccp.main(argv[1:], prog="python -m fashionseg.data.convert ccp")
    args = parser().parse_args(argv)
    try:
        task = resolve_task(args.task, args.config_dir)
        mapping = read_map_file(args.map) if args.map else None
        options = {
            "out": args.out,
            "task": task,
            "mapping": mapping,
            "unmapped": args.unmapped,
            "skip_empty": args.skip_empty,
            "person": args.person,
            "link": args.link,
        }
        if args.format == "coco":
            from fashionseg.data.coco import convert_coco

            counts = convert_coco(args.json, args.images, **options)
        else:
            from fashionseg.data.labelme import convert_labelme

            counts = convert_labelme(args.src, **options)
    except (ConversionError, TaskError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"converted {counts['converted']} photos ({counts['skipped']} without annotations "
        f"skipped) -> {args.out} (task {task.name}: {task.mask_dir}/)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
