"""Expanding `imgclf predict`'s inputs (files, folders, glob patterns) into image paths, lazily.

Example:
    >>> list(iter_image_paths([]))
    []
"""

from __future__ import annotations

import glob
import os
from typing import Iterator

from imgclf.core.errors import UserError
from imgclf.data.scan import IMAGE_EXTENSIONS, is_hidden_or_system, is_image_name


def iter_image_paths(inputs: list[str]) -> Iterator[str]:
    """Expand files, folders (recursively, sorted) and glob patterns into image paths, lazily.

    A path that does not exist, or a file given by name that is not an image
    file, is a `UserError`; non-image files found inside folders are passed
    over silently.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> for name in ("photos/a.jpg", "photos/sub/b.png", "photos/notes.txt", "extra/c.jpg"):
        ...     os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        ...     _ = open(os.path.join(root, name), "wb").write(b"")
        >>> [os.path.relpath(p, root) for p in iter_image_paths([os.path.join(root, "photos"), os.path.join(root, "extra/*.jpg")])]
        ['photos/a.jpg', 'photos/sub/b.png', 'extra/c.jpg']
    """
    _check_inputs(inputs)
    for item in inputs:
        if os.path.isdir(item):
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(d for d in dirnames if not is_hidden_or_system(d))
                for name in sorted(filenames):
                    if is_image_name(name) and not is_hidden_or_system(name):
                        yield os.path.join(dirpath, name)
        elif os.path.exists(item):
            yield item
        else:
            for match in sorted(glob.glob(item, recursive=True)):
                if os.path.isfile(match) and is_image_name(match):
                    yield match


def _check_inputs(inputs: list[str]) -> None:
    for item in inputs:
        if os.path.isdir(item):
            continue
        if os.path.exists(item):
            if not is_image_name(item):
                raise UserError(
                    f"Not an image file: {item!r}. Expected a file ending in {', '.join(IMAGE_EXTENSIONS)}, "
                    "a folder, or a glob pattern such as 'photos/*.jpg'."
                )
        elif not glob.has_magic(item):
            raise UserError(f"File or folder not found: {item!r}. Pass image files, folders or glob patterns.")
        elif not any(os.path.isfile(m) and is_image_name(m) for m in glob.iglob(item, recursive=True)):
            raise UserError(f"The pattern {item!r} matches no image files.")
