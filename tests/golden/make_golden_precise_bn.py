"""Writes the PreciseBN fixtures that tests/precise_bn_test.cpp compares recalibrate_batch_norm against.

Run with Debian's interpreter (it has python3-torch): /usr/bin/python3 tests/golden/make_golden_precise_bn.py

The model is features (conv1: Conv2d 2->3, 3x3, padding 1; bn1: BatchNorm2d; relu1) -> flatten ->
fc1 (Linear 48->5) -> bn2 (BatchNorm1d, momentum None) -> dropout -> fc2 (Linear 5->3), with drawn
weights and running statistics; the recalibration is fvcore's update_bn_stats (fvcore/nn/precise_bn.py) written out below, as
fvcore is not installed. All float32 but the counters (int64), as precise_bn_<name>.npy:
  <parameter or buffer>   the model's state before, under its state_dict name ("bn2.running_mean")
  x                       the four batches, stacked: (4, 6, 2, 4, 4)
  <bn>.recalibrated_mean, <bn>.recalibrated_var   the running statistics fvcore's rule sets
"""
import collections
import pathlib

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
rng = np.random.default_rng(20210316)


def uniform(*shape, lo=-1.0, hi=1.0):
    return torch.from_numpy(rng.uniform(lo, hi, size=shape).astype(np.float32))


def save(name, tensor):
    np.save(HERE / f"precise_bn_{name}.npy", np.ascontiguousarray(tensor.detach().numpy()))


def update_bn_stats(model, batches):
    """fvcore's rule: momentum 1 so that each forward leaves the batch's statistics, averaged over batches."""
    bn_layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bn_layers]
    for bn in bn_layers:
        bn.momentum = 1.0
    means = [torch.zeros_like(bn.running_mean) for bn in bn_layers]
    variances = [torch.zeros_like(bn.running_var) for bn in bn_layers]
    with torch.no_grad():
        for index, x in enumerate(batches):
            model(x)
            for i, bn in enumerate(bn_layers):
                means[i] += (bn.running_mean - means[i]) / (index + 1)
                variances[i] += (bn.running_var - variances[i]) / (index + 1)
    for i, bn in enumerate(bn_layers):
        bn.running_mean = means[i]
        bn.running_var = variances[i]
        bn.momentum = momenta[i]


def main():
    features = torch.nn.Sequential(collections.OrderedDict([
        ("conv1", torch.nn.Conv2d(2, 3, 3, padding=1)),
        ("bn1", torch.nn.BatchNorm2d(3)),
        ("relu1", torch.nn.ReLU()),
    ]))
    model = torch.nn.Sequential(collections.OrderedDict([
        ("features", features),
        ("flatten", torch.nn.Flatten()),
        ("fc1", torch.nn.Linear(48, 5)),
        ("bn2", torch.nn.BatchNorm1d(5, momentum=None)),
        ("dropout", torch.nn.Dropout(0.5)),
        ("fc2", torch.nn.Linear(5, 3)),
    ]))
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(uniform(*tensor.shape, lo=0.5, hi=2.0))
            else:
                tensor.copy_(uniform(*tensor.shape))
    for name, tensor in model.state_dict().items():
        save(name, tensor)
    # Channels with different means and spreads, so that every statistic matters.
    x = uniform(4, 6, 2, 4, 4, lo=-2.0, hi=2.0) * torch.tensor([1.0, 3.0]).view(1, 1, 2, 1, 1) + 0.5
    save("x", x)
    model.train()
    update_bn_stats(model, list(x))
    for name, layer in (("bn1", features.bn1), ("bn2", model.bn2)):
        save(f"{name}.recalibrated_mean", layer.running_mean)
        save(f"{name}.recalibrated_var", layer.running_var)


if __name__ == "__main__":
    main()
