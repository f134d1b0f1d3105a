"""What a prepared data set tells the models trained on it, in one type: ``Inputs``.

Prepare writes it as ``inputs.json`` beside the splits; train copies it into the model file,
so evaluate, templates and ``predict`` read the same facts through the same type:

- ``features``: the feature columns, in the order models see them (``["image"]`` for images);
- ``mean`` and ``scale``: the standardization fitted on the training split (per feature; one
  pair, the pixel scale, for images);
- ``target``: the target column; ``classes``: how many classes it has (null: regression);
- ``image_shape``: (height, width) of the images (null: a table);
- ``stored``: ``"scaled"`` (tables are stored standardized) or ``"raw"`` (images are stored as
  their raw pixels and scaled when read, by ``scale_images``: the one place that does it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.core.fileio import write_json

FILE = "inputs.json"
IMAGE_COLUMN, LABEL_COLUMN = "image", "label"  # an image table's two columns


@dataclass(frozen=True)
class Inputs:
    """The features a model takes, how to scale them, and what it predicts."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    target: str
    stored: Literal["scaled", "raw"]
    classes: int | None = None
    image_shape: tuple[int, int] | None = None

    @classmethod
    def of_images(cls, shape: tuple[int, int], classes: int, pixel_scale: float = 255.0
                  ) -> Inputs:
        """Images of ``shape`` stored raw, scaled by ``pixel_scale`` when read, labelled
        0..``classes``-1."""
        return cls((IMAGE_COLUMN,), (0.0,), (float(pixel_scale),), LABEL_COLUMN, "raw",
                   classes, (int(shape[0]), int(shape[1])))

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def images(self) -> bool:
        return self.image_shape is not None

    def scale_images(self, images: np.ndarray) -> np.ndarray:
        """Raw pixels (n, h, w) as model input: (n, h, w, 1) float32, scaled."""
        return ((images.astype(np.float32) - self.mean[0]) / self.scale[0])[..., None]

    def scale_rows(self, raw: np.ndarray) -> np.ndarray:
        """Raw feature rows (n, features), in ``features`` order, as model input (float32)."""
        mean, scale = np.asarray(self.mean), np.asarray(self.scale)
        return ((np.asarray(raw, np.float64) - mean) / scale).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("features", "mean", "scale", "image_shape"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> Inputs:
        """The ``inputs.json`` at ``path``, checked; one line naming the file if not."""
        try:
            value = json.loads(path.read_text())
        except FileNotFoundError:
            raise JaxpipeError(f"{path}: not found (run the prepare stage first)") from None
        except (ValueError, OSError) as exc:
            raise JaxpipeError(f"{path}: cannot read ({exc.__class__.__name__})") from None
        return cls.from_json(value, str(path))

    @classmethod
    def from_json(cls, value: Any, where: str) -> Inputs:
        """An ``Inputs`` from its JSON form, every field checked: named features, a finite
        mean and a positive finite scale for each, a target, a class count and image shape
        that make sense."""
        if not isinstance(value, dict):
            raise JaxpipeError(f"{where}: missing or malformed (expected a mapping)")
        missing = sorted({"features", "mean", "scale", "target", "stored"} - set(value))
        if missing:
            raise JaxpipeError(f"{where}: missing '{missing[0]}'")
        unknown = sorted(set(value) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise JaxpipeError(f"{where}: unknown key '{unknown[0]}'")
        features = value["features"]
        if (not isinstance(features, list) or not features
                or not all(isinstance(f, str) for f in features)):
            raise JaxpipeError(f"{where}: 'features' needs a list of column names")
        n = len(features)
        numbers = {key: _numbers(value[key], key, n, where) for key in ("mean", "scale")}
        if any(s <= 0 for s in numbers["scale"]):
            raise JaxpipeError(f"{where}: 'scale' holds a value that is not positive")
        if not isinstance(value["target"], str) or not value["target"]:
            raise JaxpipeError(f"{where}: 'target' needs a column name")
        if value["stored"] not in ("scaled", "raw"):
            raise JaxpipeError(f"{where}: 'stored' is {value['stored']!r}, not 'scaled' or 'raw'")
        classes = value.get("classes")
        if classes is not None and (not _is_int(classes) or not 2 <= classes <= 1_000_000):
            raise JaxpipeError(f"{where}: 'classes' is {classes!r}, not a count from 2")
        shape = value.get("image_shape")
        if shape is not None and (not isinstance(shape, list) or len(shape) != 2
                                  or not all(_is_int(d) and 0 < d <= 1 << 16 for d in shape)):
            raise JaxpipeError(f"{where}: 'image_shape' is {shape!r}, not [height, width]")
        if (shape is not None) != (value["stored"] == "raw"):
            raise JaxpipeError(f"{where}: images are stored raw and tables scaled "
                               f"(image_shape {shape!r} with stored {value['stored']!r})")
        return cls(tuple(features), numbers["mean"], numbers["scale"], value["target"],
                   value["stored"], classes, None if shape is None else (shape[0], shape[1]))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(values: Any, key: str, n: int, where: str) -> tuple[float, ...]:
    if not isinstance(values, list) or len(values) != n:
        raise JaxpipeError(f"{where}: '{key}' needs one number per feature ({n})")
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not numeric or not np.isfinite(np.asarray(values, np.float64)).all():
        raise JaxpipeError(f"{where}: '{key}' holds a value that is not a finite number")
    return tuple(float(v) for v in values)
