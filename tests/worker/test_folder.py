"""folder:PATH datasets: the layout, the seeded split, streaming from disk, one line per mistake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.errors import UserError
from worker.datasets import dataset_spec, load_dataset


def write(path: Path, colour, size=(12, 10), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def folder(tmp_path: Path, per_class: int = 10, test: bool = True) -> Path:
    root = tmp_path / "pets"
    for k, (name, colour) in enumerate((("cat", (200, 10, 10)), ("dog", (10, 200, 10)), ("eel", (10, 10, 200)))):
        for i in range(per_class):
            write(root / name / f"{i:03d}.png", colour)
        if test:
            write(root / "test" / name / "t.png", colour)
    return root


def load(root: Path, **kw):
    return load_dataset(f"folder:{root}", validation_size=kw.pop("validation_size", 6), seed=kw.pop("seed", 0),
                        cache_dir=root.parent / "cache", **kw)


def test_a_folder_loads_with_classes_a_seeded_split_and_its_test_split(tmp_path):
    root = folder(tmp_path)
    d = load(root)
    assert (d.n_train, d.n_val, d.n_test) == (24, 6, 3) and d.num_classes == 3
    assert d.input_shape == (10, 12, 3) and d.classes == ("cat", "dog", "eel")
    assert dataset_spec(f"folder:{root}") == ((10, 12, 3), 3)
    again, other = load(root), load(root, seed=1)
    assert again.files == d.files and other.files["val"] != d.files["val"]  # the same on every worker
    assert not set(d.files["train"]) & set(d.files["val"])
    x, y = next(iter(d.source("test").batch(3)))
    assert x.shape == (3, 10, 12, 3) and 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
    # the colour tells the class: labels follow the sorted folder names
    assert [int(np.argmax(x[i, 0, 0])) for i in range(3)] == [0, 1, 2] == y.numpy().tolist()


def test_images_are_resized_to_the_configured_size(tmp_path):
    root = folder(tmp_path, test=False)
    write(root / "cat" / "big.png", (200, 10, 10), size=(40, 30))
    d = load(root, image_size=16)
    assert d.input_shape == (16, 16, 3) and d.n_test == 0
    x, _ = next(iter(d.source("train").batch(100)))
    assert x.shape == (d.n_train, 16, 16, 3)


def test_images_are_decoded_from_disk_while_iterating_not_up_front(tmp_path, monkeypatch):
    root = folder(tmp_path, per_class=4, test=False)
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: decoded.append(self) or None)
    d = load(root, validation_size=3)
    assert decoded == []  # loading read headers only
    monkeypatch.undo()
    # a file changed on disk after loading: the pipeline reads the new pixels
    victim = d.files["train"][0]
    write(Path(victim), (255, 255, 255))
    first = next(iter(d.source("train").batch(1)))[0].numpy()
    assert first.min() == pytest.approx(1.0)


def test_training_on_a_folder_streams_it(tmp_path):
    from shared.config import TrainConfig
    from shared.space import Cell
    from worker.training import train_child

    root = folder(tmp_path, per_class=8)
    d = load(root)
    cfg = TrainConfig(dataset=f"folder:{root}", epochs=1, filters=4, cells_per_stage=1, batch_size=8,
                      augment="standard", evaluate_test=True)
    r = train_child(Cell.of([[-1, "max3x3", -2, "identity"]]), cfg, dataset=d)
    assert r.extra["augment"] == "standard" and r.extra["flip"] and r.test_accuracy is not None
    assert r.extra["train_samples"] == d.n_train


@pytest.mark.parametrize("make,message", [
    (lambda r: r.mkdir(), "has no class sub-folders"),
    (lambda r: write(r / "cat" / "a.png", (1, 2, 3)), "single class (cat)"),
    (lambda r: ((r / "cat").mkdir(parents=True), (r / "dog").mkdir()), "holds no images"),
    (lambda r: (write(r / "cat" / "a.png", (1, 2, 3)), write(r / "dog" / "b.png", (1, 2, 3), size=(8, 8))),
     "mixed sizes (12x10 in cat/a.png, 8x8 in dog/b.png); set image_size"),
    (lambda r: (write(r / "cat" / "a.png", (1, 2, 3)), (r / "dog").mkdir(), (r / "dog" / "b.png").write_bytes(b"nope")),
     "cannot read image dog/b.png"),
    (lambda r: (write(r / "cat" / "a.png", (1, 2, 3)), write(r / "dog" / "b.png", (1, 2, 3)),
                write(r / "test" / "owl" / "c.png", (1, 2, 3))), "test/ has classes the training folders lack: owl"),
])
def test_each_bad_folder_is_one_user_error(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(UserError) as exc:
        load(root, validation_size=1)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path / "nowhere")
