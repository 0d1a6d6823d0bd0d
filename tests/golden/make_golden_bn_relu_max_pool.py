"""Writes the BatchNormReLUMaxPool2d fixtures that tests/golden_bn_test.cpp compares xgrad against:
torch's F.max_pool2d(F.relu(bn(x)), 2) with bn = torch.nn.BatchNorm2d(3).

Run with Debian's interpreter (it has python3-torch): /usr/bin/python3 tests/golden/make_golden_bn_relu_max_pool.py

One case, bn_relu_max_pool2d, all float32 as torch computes it (eps 1e-5, momentum 0.1), as
bn_relu_max_pool2d_<name>.npy beside this script. x is (5, 3, 7, 6): H odd, so that the last row is
in the statistics but in no window. dy is of the pooled shape (5, 3, 3, 3); dx, dweight, dbias are
the gradients of sum(y * dy). Names:
  x, weight, bias, dy     weight and bias not the defaults, so that both matter
  running_mean, running_var     the running statistics before (not 0 and 1)
  y, dx, dweight, dbias   one training step from them
  running_mean_after, running_var_after   after that step; num_batches_tracked_after, shape (1,)
  eval_y, eval_dx, eval_dweight, eval_dbias   a fresh layer in eval with the running statistics
                          before, for the same x and dy
In both modes every window's maximum of bn(x) is at least MARGIN from 0 and, when positive, from
the window's next value (checked in double before anything is written), so that rounding cannot
move a window's arg-max or the ReLU's side.
"""
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

HERE = pathlib.Path(__file__).resolve().parent
CASE = "bn_relu_max_pool2d"
SHAPE = (5, 3, 7, 6)
EPS = 1e-5
MARGIN = 1e-3


def save(**tensors):
    for name, t in tensors.items():
        array = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        np.save(HERE / f"{CASE}_{name}.npy", np.ascontiguousarray(array, dtype=np.float32))


def make_layer(weight, bias, running_mean, running_var):
    layer = torch.nn.BatchNorm2d(SHAPE[1], eps=EPS, momentum=0.1)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        layer.running_mean.copy_(running_mean)
        layer.running_var.copy_(running_var)
    return layer


def forward_backward(layer, x, dy):
    layer.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = F.max_pool2d(F.relu(layer(x)), 2)
    y.backward(dy)
    return dict(y=y, dx=x.grad, dweight=layer.weight.grad, dbias=layer.bias.grad)


def expect_margins(what, x, weight, bias, mean, var):
    """bn(x) in double with these statistics; every 2x2 window (stride 2, the odd last row left
    out) has its maximum at least MARGIN from 0 and, when positive, from its next value."""
    c = lambda v: v.double().reshape(1, -1, 1, 1)
    z = (x.double() - c(mean)) / torch.sqrt(c(var) + EPS) * c(weight) + c(bias)
    n, ch, h, w = z.shape
    windows = z[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, ch, h // 2, 2, w // 2, 2)
    values = windows.permute(0, 1, 2, 4, 3, 5).reshape(-1, 4).sort(dim=1, descending=True).values
    first, second = values[:, 0], values[:, 1]
    assert first.abs().min() >= MARGIN, f"{what}: a window's maximum within {MARGIN} of 0"
    gap = (first - second)[first > 0]
    assert gap.min() >= MARGIN, f"{what}: a window's two largest within {MARGIN}"
    print(f"{what}: {int((first > 0).sum())} of {len(first)} windows positive, "
          f"smallest |max| {first.abs().min():.3e}, smallest gap {gap.min():.3e}")


def main():
    generator = torch.Generator().manual_seed(20150211)
    channels = SHAPE[1]
    # Per-channel means and scales, so that the statistics differ between channels.
    centre = torch.randn((1, channels, 1, 1), generator=generator) * 3
    scale = torch.rand((1, channels, 1, 1), generator=generator) * 2 + 0.5
    x = torch.randn(SHAPE, generator=generator) * scale + centre
    weight = torch.rand(channels, generator=generator) + 0.5
    bias = torch.randn(channels, generator=generator) * 0.5
    # Running statistics near the batch's, so that eval's outputs are neither all 0 nor all positive.
    running_mean = centre.reshape(-1) + torch.randn(channels, generator=generator) * 0.5
    running_var = (scale.reshape(-1) * (torch.rand(channels, generator=generator) * 0.6 + 0.7)) ** 2
    pooled = (SHAPE[0], SHAPE[1], SHAPE[2] // 2, SHAPE[3] // 2)
    dy = torch.randn(pooled, generator=generator)

    batch_mean = x.double().mean((0, 2, 3))
    batch_var = x.double().var((0, 2, 3), unbiased=False)
    expect_margins("training", x, weight, bias, batch_mean, batch_var)
    expect_margins("eval", x, weight, bias, running_mean, running_var)

    fixtures = dict(x=x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var, dy=dy)
    layer = make_layer(weight, bias, running_mean, running_var)
    fixtures.update(forward_backward(layer, x, dy))
    fixtures.update(running_mean_after=layer.running_mean, running_var_after=layer.running_var,
                    num_batches_tracked_after=layer.num_batches_tracked.reshape(1))

    fresh = make_layer(weight, bias, running_mean, running_var)
    fresh.eval()
    fixtures.update({f"eval_{name}": t for name, t in forward_backward(fresh, x, dy).items()})
    assert fixtures["y"].shape == fixtures["eval_y"].shape == pooled
    save(**fixtures)
    print(f"torch {torch.__version__}: wrote {len(fixtures)} {CASE} fixtures to {HERE}")


if __name__ == "__main__":
    main()
