"""Every model config's checks, on both sides of each bound: a value just inside is taken,
one just outside fails naming its key (the line a user sees for a bad params.yaml)."""

import pytest

from jaxpipe.core.config import MAX_STEPS, SEED_MAX
from jaxpipe.models import cnn, linreg, logreg, mlp, softmax
from jaxpipe.models.cnn import MAX_BATCH, MAX_EPOCHS
from jaxpipe.models.mlp import MAX_HIDDEN

# (config class, key, a good value, a bad value, the message's start)
CASES = [
    (cnn.Config, "epochs", 1, 0, "epochs: 0 is outside [1, 10_000]"),
    (cnn.Config, "epochs", MAX_EPOCHS, MAX_EPOCHS + 1, "epochs: 10001 is outside"),
    (cnn.Config, "batch_size", MAX_BATCH, MAX_BATCH + 1, "batch_size: 65537 is outside"),
    (cnn.Config, "eval_batch_size", 1, 0, "eval_batch_size: 0 is outside"),
    (cnn.Config, "seed", 0, -1, "seed: -1 is outside"),
    (cnn.Config, "seed", SEED_MAX - 1, SEED_MAX, f"seed: {SEED_MAX} is outside"),
    (cnn.Config, "max_train_images", 1, 0, "max_train_images: must be positive or null"),
    (cnn.Config, "max_train_images", None, -5, "max_train_images: must be positive or null"),
    (cnn.Config, "devices", "all", 0, "devices: must be a positive number or 'all'"),
    (cnn.Config, "devices", 2, "some", "devices: must be a positive number or 'all'"),
    (cnn.Config, "memory_budget_mb", 0.5, 0.0, "memory_budget_mb: must be positive or null"),
    (cnn.Config, "max_loss_growth", 1.0001, 1.0, "max_loss_growth: must be in (1, 1e6]"),
    (cnn.Config, "max_loss_growth", 1e6, 1e6 * 1.001, "max_loss_growth: must be in (1, 1e6]"),
    (logreg.Config, "steps", MAX_STEPS, MAX_STEPS + 1, f"steps: {MAX_STEPS + 1} is outside"),
    (logreg.Config, "seed", SEED_MAX, SEED_MAX + 1, f"seed: {SEED_MAX + 1} is outside"),
    (logreg.Config, "l2", 0.0, -1e-9, "l2: must be non-negative"),
    (softmax.Config, "steps", 1, 0, "steps: 0 is outside"),
    (softmax.Config, "seed", 0, -1, "seed: -1 is outside"),
    (softmax.Config, "l2", 0.0, -1e-9, "l2: must be non-negative"),
    (linreg.Config, "batch_size", 1, 0, "batch_size: 0 is outside"),
    (linreg.Config, "steps", 1, 0, "steps: 0 is outside"),
    (linreg.Config, "seed", SEED_MAX, SEED_MAX + 1, f"seed: {SEED_MAX + 1} is outside"),
    (mlp.Config, "hidden", MAX_HIDDEN, MAX_HIDDEN + 1, f"hidden: {MAX_HIDDEN + 1} is outside"),
    (mlp.Config, "eps", 1e-12, 0.0, "eps: must be positive"),
    (mlp.Config, "check_every", 1, 0, "check_every: must be positive"),
    (mlp.Config, "seed", 0, -1, "seed: -1 is outside"),
]


@pytest.mark.parametrize(("cls", "key", "good", "bad", "message"), CASES,
                         ids=[f"{c[0].__module__.rsplit('.', 1)[-1]}.{c[1]}={c[3]}"
                              for c in CASES])
def test_a_value_past_its_bound_is_refused_naming_the_key(cls, key, good, bad, message) -> None:
    assert getattr(cls(**{key: good}), key) == good
    with pytest.raises(ValueError) as err:
        cls(**{key: bad})
    assert str(err.value).startswith(message), str(err.value)


def test_mlp_max_steps_must_cover_one_check() -> None:
    assert mlp.Config(check_every=10, max_steps=10).max_steps == 10
    with pytest.raises(ValueError, match="^max_steps: must be >= check_every$"):
        mlp.Config(check_every=10, max_steps=9)
