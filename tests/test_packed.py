"""packed_linears: the same products on weights packed once — equal to float rounding, patched only where it may be."""

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from ctrldial.packed import available, packed_linears

pytestmark = pytest.mark.skipif(not available(), reason="torch without oneDNN")


def _net():
    torch.manual_seed(0)
    conv = Conv1D(24, 16)  # GPT-2's layer: x @ W + b, W in × out
    torch.nn.init.normal_(conv.weight)
    return torch.nn.Sequential(torch.nn.Linear(16, 16), conv, torch.nn.Linear(24, 8, bias=False))


def test_packed_products_equal_the_plain_ones_and_are_undone():
    net, x = _net(), torch.randn(3, 5, 16)
    with torch.inference_mode():
        plain = net(x)
        with packed_linears(net):
            assert all("forward" in m.__dict__ for m in net)  # every layer runs the packed product
            packed = net(x)
        assert not any("forward" in m.__dict__ for m in net)
        again = net(x)
    assert torch.allclose(packed, plain, rtol=1e-5, atol=1e-5) and torch.equal(again, plain)


def test_nothing_is_patched_with_gradients_autocast_hooks_or_other_dtypes():
    net = _net()
    with packed_linears(net):  # gradients on: the packed product has none
        assert not any("forward" in m.__dict__ for m in net)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), packed_linears(net):
        assert not any("forward" in m.__dict__ for m in net)
    hooked = net[0].register_forward_hook(lambda *a: None)
    net[2].double()
    with torch.inference_mode(), packed_linears(net):
        assert ["forward" in m.__dict__ for m in net] == [False, True, False]
    hooked.remove()


def test_a_call_under_autocast_or_on_another_dtype_takes_the_plain_product():
    """A forward wrapped in autocast after the context opened (accelerate does that) keeps autocast's precision."""
    net, x = _net(), torch.randn(2, 16)
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = net(x)
        with packed_linears(net):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = net(x)
            with pytest.raises(RuntimeError, match="same dtype"):  # the plain product's own error, as without the context
                net[0](x.bfloat16())
    assert got.dtype == expected.dtype == torch.bfloat16 and torch.equal(got, expected)
