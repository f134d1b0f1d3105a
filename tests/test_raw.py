"""``jaxpipe.data.raw``: raw MNIST images are checked against the shape their schema
declares."""

from pathlib import Path

import numpy as np
import pytest

from jaxpipe.core.errors import JaxpipeError
from jaxpipe.data.raw import check_images
from jaxpipe.data.schema import load_schema

ROOT = Path(__file__).parents[1]


def test_image_checks_accept_the_schema_shape_and_name_a_wrong_one() -> None:
    schema = load_schema(ROOT / "schemas" / "mnist.yaml")
    labels = np.arange(4, dtype=np.uint8)
    check_images(np.zeros((4, 28, 28), np.uint8), labels, schema, "src")  # as declared
    with pytest.raises(JaxpipeError) as err:
        check_images(np.zeros((4, 28, 27), np.uint8), labels, schema, "src (train)")
    assert str(err.value) == "src (train): images are [28, 27], the schema declares [28, 28]"
