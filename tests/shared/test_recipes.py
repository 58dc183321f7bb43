"""Named recipes for `pnas final`: they validate, they build, and flags override them."""

from __future__ import annotations

import numpy as np
import pytest

from pnas.commands.final import final_overrides
from shared.config import SearchConfig, TrainConfig
from shared.errors import UserError
from shared.recipes import RECIPES, recipe
from shared.space import PNASNET5

RUN = SearchConfig().to_json()


def trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_is_a_valid_training_and_is_stored_by_name(name):
    over = final_overrides(RUN, recipe_name=name)
    assert over["recipe"] == name
    cfg = TrainConfig(**{**SearchConfig().train.model_dump(), **over})
    assert cfg.evaluate_test and cfg.aux_head and cfg.reward == "final"


def test_flags_override_the_recipe_and_bad_values_are_user_errors():
    over = final_overrides(RUN, recipe_name="paper-cifar", epochs=3, cutout=16, aux_head=False)
    assert (over["epochs"], over["cutout"], over["aux_head"], over["filters"]) == (3, 16, False, 48)
    with pytest.raises(UserError, match="unknown recipe 'paper-imagenet'; choose one of: paper-cifar"):
        recipe("paper-imagenet")
    with pytest.raises(UserError, match="invalid label-smoothing"):
        final_overrides(RUN, recipe_name="paper-cifar", label_smoothing=1.5)


def test_paper_cifar_builds_pnasnet5_at_the_published_size():
    from worker.network import network_for

    cfg = TrainConfig(**{**SearchConfig().train.model_dump(), **recipe("paper-cifar")})
    with_aux = trainable(network_for(PNASNET5, cfg, input_shape=(32, 32, 3), num_classes=10, total_steps=10))
    cfg_no_aux = cfg.model_copy(update={"aux_head": False})
    body = trainable(network_for(PNASNET5, cfg_no_aux, input_shape=(32, 32, 3), num_classes=10))
    # measured: 3,189,082 without the auxiliary head (published: 3.2M), 4,832,868 with it
    assert abs(body - 3.2e6) / 3.2e6 < 0.01
    assert with_aux - body > 1.5e6  # slim's aux head: 1x1 conv to 128, 4x4 conv to 768, classifier


def test_paper_imagenet_mobile_builds_at_224_pixels():
    from worker.network import network_for

    cfg = TrainConfig(**{**SearchConfig().train.model_dump(), **recipe("paper-imagenet-mobile")})
    body = trainable(network_for(PNASNET5, cfg.model_copy(update={"aux_head": False}),
                                 input_shape=(cfg.image_size,) * 2 + (3,), num_classes=1000))
    assert abs(body - 5.1e6) / 5.1e6 < 0.02  # measured: 5,064,487 (published 5.1M)
