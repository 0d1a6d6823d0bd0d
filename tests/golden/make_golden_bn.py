"""Writes the BatchNorm fixtures that tests/golden_bn_test.cpp compares xgrad against.

Run with Debian's interpreter (it has python3-torch): /usr/bin/python3 tests/golden/make_golden_bn.py

Three cases, all float32: bn1d_nc (BatchNorm1d over (N, C)), bn1d_ncl (BatchNorm1d over
(N, C, L)) and bn2d (BatchNorm2d over (N, C, H, W)). For each, <case>_<name>.npy with name:
  x                     three training batches, stacked: (3, N, C, ...)
  weight, bias          gamma and beta (not the defaults, so that both matter)
  dy                    the upstream gradient
  y                     the training forward of batch 0
  dx, dweight, dbias    the gradients of sum(y * dy)
  running_mean, running_var                 after training on the 3 batches, momentum 0.1
  cumulative_running_mean, cumulative_running_var   the same with momentum None
  eval_y, eval_dx, eval_dweight, eval_dbias  eval forward of batch 0 with the momentum-0.1
                        running statistics, and its gradients for dy
"""

import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    "bn1d_nc": (torch.nn.BatchNorm1d, (8, 5)),
    "bn1d_ncl": (torch.nn.BatchNorm1d, (6, 4, 7)),
    "bn2d": (torch.nn.BatchNorm2d, (4, 3, 5, 6)),
}


def save(case, name, tensor):
    array = np.ascontiguousarray(tensor.detach().numpy().astype(np.float32))
    np.save(os.path.join(HERE, f"{case}_{name}.npy"), array)


def make_layer(kind, channels, weight, bias, momentum):
    layer = kind(channels, momentum=momentum)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def forward_backward(layer, x, dy):
    x = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    y = layer(x)
    y.backward(dy)
    return y, x.grad, layer.weight.grad, layer.bias.grad


def write_case(case, kind, shape, generator):
    channels = shape[1]
    # Per-channel means and scales, so that the statistics differ between channels.
    centre = torch.randn((1, channels) + (1,) * (len(shape) - 2), generator=generator) * 3
    scale = torch.rand((1, channels) + (1,) * (len(shape) - 2), generator=generator) * 2 + 0.5
    x = torch.randn((3,) + shape, generator=generator) * scale + centre
    weight = torch.rand(channels, generator=generator) + 0.5
    bias = torch.randn(channels, generator=generator)
    dy = torch.randn(shape, generator=generator)
    for name, tensor in [("x", x), ("weight", weight), ("bias", bias), ("dy", dy)]:
        save(case, name, tensor)

    layer = make_layer(kind, channels, weight, bias, 0.1)
    outputs = forward_backward(layer, x[0], dy)
    for name, tensor in zip(["y", "dx", "dweight", "dbias"], outputs):
        save(case, name, tensor)
    for step in (1, 2):
        layer(x[step])
    save(case, "running_mean", layer.running_mean)
    save(case, "running_var", layer.running_var)

    layer.eval()
    outputs = forward_backward(layer, x[0], dy)
    for name, tensor in zip(["eval_y", "eval_dx", "eval_dweight", "eval_dbias"], outputs):
        save(case, name, tensor)

    cumulative = make_layer(kind, channels, weight, bias, None)
    for step in range(3):
        cumulative(x[step])
    save(case, "cumulative_running_mean", cumulative.running_mean)
    save(case, "cumulative_running_var", cumulative.running_var)


def main():
    generator = torch.Generator().manual_seed(20150211)
    for case, (kind, shape) in CASES.items():
        write_case(case, kind, shape, generator)
    print(f"torch {torch.__version__}: wrote {len(CASES)} BatchNorm cases to {HERE}")


if __name__ == "__main__":
    main()
