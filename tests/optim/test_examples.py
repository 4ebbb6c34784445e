"""The example model files load like a user's, slim exactly, and (torchvision) bring their data."""
from __future__ import annotations

import pytest
import torch

import pareco_fx
from optim_helpers import EXAMPLES
from pareco_fx import modelfile


@pytest.mark.parametrize(("name", "slimmable"), [("fashion_resnet", 12), ("fashion_mobilenet", 11),
                                                 ("torchvision_custom_data", 27)])
def test_example_slims_exactly(name: str, slimmable: int) -> None:
    torch.manual_seed(0)
    loaded = modelfile.load(str(EXAMPLES / f"{name}.py"))
    (x,) = loaded.example_inputs
    assert x.shape[0] == 2
    slim = pareco_fx.make_slimmable(loaded.model, loaded.example_inputs)
    assert sum(g.slimmable for g in slim.groups) == slimmable
    loaded.model.eval()
    slim.eval()
    with torch.no_grad():
        assert torch.allclose(slim(x), loaded.model(x), atol=1e-5)
        widths = torch.linspace(0.42, 1.0, len(slim.groups)).tolist()
        slim.set_widths(widths)
        assert torch.allclose(slim.extract(widths)(x), slim(x), atol=1e-5)
    assert slim.cost("memory", 0.42) < slim.cost("memory")


def test_torchvision_example_brings_its_data() -> None:
    loaded = modelfile.load(str(EXAMPLES / "torchvision_custom_data.py"))
    train, val, test = loaded.load_datasets()
    assert (len(train), len(val), len(test)) == (4500, 500, 1000)
    image, label = train[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10
    # The padding is the normalised background, and the three channels are the same image.
    assert torch.equal(image[0], image[2]) and torch.allclose(image[:, :2], image[:, :2].min())
