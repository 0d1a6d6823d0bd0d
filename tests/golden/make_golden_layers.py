"""Writes the PyTorch fixtures of the layers, the loss and the optimizers (BatchNorm's are
make_golden_bn.py's) that tests/golden_layers_test.cpp compares xgrad against.

Run with Debian's interpreter (it has python3-torch): /usr/bin/python3 tests/golden/make_golden_layers.py

All float32 but the labels (int64), as <case>_<name>.npy beside this script:
  linear, conv2d_*, max_pool2d_*: x, the parameters (weight, bias), y, the upstream gradient dy,
      and dx, dweight, dbias, the gradients of sum(y * dy)
  cross_entropy: logits, labels, loss (shape (1,)), dlogits
  sgd_momentum, adam: p0, then for steps 1 and 2 the gradient g<step> and the parameter
      p<step> after it; and the optimizer's state after step 2
"""
import pathlib

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
rng = np.random.default_rng(20150211)


def uniform(*shape, scale=1.0):
    return (rng.uniform(-scale, scale, size=shape)).astype(np.float32)


def save(case, **tensors):
    for name, t in tensors.items():
        np.save(HERE / f"{case}_{name}.npy", np.ascontiguousarray(t.detach().numpy()))


def backprop(module, x):
    """x, y, a random upstream gradient dy, and the gradients of x and of the parameters for it."""
    x = torch.from_numpy(x).requires_grad_(True)
    y = module(x)
    dy = torch.from_numpy(uniform(*y.shape))
    y.backward(dy)
    grads = {f"d{name}": p.grad for name, p in module.named_parameters()}
    return dict(x=x, y=y, dy=dy, dx=x.grad, **grads)


def params(module):
    return {name: p for name, p in module.named_parameters()}


def with_params(module, **values):
    with torch.no_grad():
        for name, v in values.items():
            getattr(module, name).copy_(torch.from_numpy(v))
    return module


def linear():
    m = with_params(torch.nn.Linear(5, 3), weight=uniform(3, 5), bias=uniform(3))
    save("linear", **params(m), **backprop(m, uniform(4, 5, scale=2.0)))


def conv2d(case, x_shape, out_channels, kernel, stride, padding, bias):
    in_channels = x_shape[1]
    m = torch.nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=bias)
    kh, kw = m.kernel_size
    with_params(m, weight=uniform(out_channels, in_channels, kh, kw))
    if bias:
        with_params(m, bias=uniform(out_channels))
    save(case, **params(m), **backprop(m, uniform(*x_shape, scale=2.0)))


def max_pool2d(case, x_shape, kernel, stride):
    m = torch.nn.MaxPool2d(kernel, stride)
    save(case, **backprop(m, uniform(*x_shape, scale=2.0)))


def cross_entropy():
    logits = torch.from_numpy(uniform(6, 5, scale=3.0)).requires_grad_(True)
    labels = torch.from_numpy(rng.integers(0, 5, size=6).astype(np.int64))
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    save("cross_entropy", logits=logits, labels=labels, loss=loss.reshape(1), dlogits=logits.grad)


def optimizer_steps(case, make, state_names):
    """Two steps from p0 with gradients g1, g2; the parameter after each and the final state."""
    p = torch.from_numpy(uniform(3, 4)).requires_grad_(True)
    p0 = p.detach().clone()
    opt = make([p])
    out = dict(p0=p0)
    for step in (1, 2):
        g = torch.from_numpy(uniform(3, 4))
        p.grad = g.clone()
        opt.step()
        out[f"g{step}"] = g
        out[f"p{step}"] = p.detach().clone()
    for name in state_names:
        out[name] = opt.state[p][name]
    save(case, **out)


def main():
    linear()
    conv2d("conv2d_stride2_pad1", (2, 3, 7, 6), 4, 3, 2, 1, True)
    conv2d("conv2d_rect_nobias", (2, 2, 5, 7), 3, (2, 3), (1, 2), (0, 1), False)
    max_pool2d("max_pool2d_2x2", (2, 3, 6, 7), 2, 2)
    max_pool2d("max_pool2d_3x3_stride2", (2, 2, 7, 7), 3, 2)
    cross_entropy()
    optimizer_steps("sgd_momentum",
                    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
                    ["momentum_buffer"])
    optimizer_steps("adam", lambda ps: torch.optim.Adam(ps, lr=0.1, weight_decay=0.01), ["exp_avg", "exp_avg_sq"])
    print("torch", torch.__version__, "fixtures written to", HERE)


if __name__ == "__main__":
    main()
