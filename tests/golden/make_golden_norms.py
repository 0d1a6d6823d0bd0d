"""Writes the fixtures of the normalization family (BatchNorm's are make_golden_bn.py's) that
tests/golden_group_norms_test.cpp and tests/golden_bn_family_test.cpp compare xgrad against.

Run with Debian's interpreter (it has python3-torch): /usr/bin/python3 tests/golden/make_golden_norms.py

Every file is float32, <case>_<name>.npy beside this script; counts (num_batches_tracked) are
float32 arrays of shape (1,). In every case dy is the upstream gradient and dx, d<parameter> are
the gradients of sum(y * dy). Weights and biases are random (not the defaults), so that both matter.

From torch's layers (computed by torch in float32, eps 1e-5, momentum 0.1):
  group_norm_g3_c6 (GroupNorm(3, 6), x (3, 6, 4, 5)), group_norm_g1_c4 (GroupNorm(1, 4), x
  (2, 4, 3, 5)), group_norm_g4_c4 (GroupNorm(4, 4), x (2, 4, 3, 5)), group_norm_g2_c32_nc
  (GroupNorm(2, 32), x (5, 32)) and group_norm_g2_c6_short (GroupNorm(2, 6), x (3, 6, 7)), the
  last two with fewer than 16 spatial elements and several channels a group (xgrad's rows per group):
      x, weight, bias (C,), dy, y, dx, dweight, dbias
  layer_norm_chw (LayerNorm((4, 5, 6)), x (3, 4, 5, 6)), layer_norm_last (LayerNorm(7), x (4, 7)):
      x, weight, bias (normalized_shape), dy, y, dx, dweight, dbias
  instance_norm1d[_affine][_track] (InstanceNorm1d(4), x (3, 4, 6)) and
  instance_norm2d[_affine][_track] (InstanceNorm2d(4), x (3, 4, 3, 5)), the four combinations of
  affine and track_running_stats, all in training mode:
      x, dy, y, dx; with affine also weight, bias (C,), dweight, dbias
      with track_running_stats also: x2, a second training batch; running_mean, running_var (C,)
      after training on x then x2; eval_y, eval_dx (with affine eval_dweight, eval_dbias): eval
      forward of x with those running statistics, gradients for dy. torch 1.13 does not count
      InstanceNorm's num_batches_tracked (it stays 0), so no fixture holds it.
      Without track_running_stats eval is the training forward (instance statistics).

From the reference implementations below (torch autograd in double on the float32 inputs, each
checked against an independent computation before anything is written):
  batch_renorm2d_clipped (rmax 3, dmax 5) and batch_renorm2d_r1_d0 (rmax 1, dmax 0): BatchRenorm2d(6),
  momentum 0.01, one training step from chosen running statistics, the same inputs in both:
      x (4, 6, 3, 3), weight, bias (6,), dy, running_mean, running_var (6,) before the step;
      y, dx, dweight, dbias; running_mean_after, running_var_after (6,);
      eval_y, eval_dx, eval_dweight, eval_dbias: BatchNorm's eval with the running statistics after.
      The running statistics are chosen so that with rmax 3, dmax 5 channels 0 and 1 clip r (above
      and below), channels 2 and 3 clip d (above and below), channels 4 and 5 clip neither.
  ghost_batch_norm2d_vb3: GhostBatchNorm2d(3, virtual_batch 3), momentum 0.1, running statistics
  starting at 0 and 1, one training step over chunks of 3, 3 and 1 samples:
      x (7, 3, 2, 2), weight, bias (3,), dy, y, dx, dweight, dbias; running_mean, running_var (3,)
      and num_batches_tracked (3 chunks) after the step; eval_y, eval_dx, eval_dweight, eval_dbias.
  filter_response_norm2d: FilterResponseNorm2d(4) with TLU, eps 1e-6, no y within 1e-3 of tau:
      x (2, 4, 3, 4), weight, bias, tau (4,), dy, y (after the TLU), dx, dweight, dbias, dtau
  std_conv2d_bias (x (2, 3, 5, 5), weight (4, 3, 3, 3), bias (4,)) and std_conv2d_nobias
  (x (2, 2, 4, 6), weight (3, 2, 3, 3)): Conv2d with weight standardization, eps 1e-6, stride 1,
  padding 1:
      x, weight, [bias], dy, y, dx, dweight, [dbias]
"""
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

HERE = pathlib.Path(__file__).resolve().parent
rng = np.random.default_rng(20170210)

# How far a reference may be from its independent computation, both in double.
AGREEMENT = 1e-10


def uniform(*shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape).astype(np.float32)


def scales(*shape):
    """Weights away from zero, so that every channel's normalized values matter."""
    return uniform(*shape, low=0.5, high=1.5)


def channel_data(shape):
    """Normal values with a mean and a scale per channel (dimension 1), so statistics differ."""
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    centre = rng.normal(0.0, 3.0, size=per_channel)
    scale = rng.uniform(0.5, 2.5, size=per_channel)
    return (rng.normal(size=shape) * scale + centre).astype(np.float32)


def as_array(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def save(case, **tensors):
    for name, t in tensors.items():
        np.save(HERE / f"{case}_{name}.npy", np.ascontiguousarray(as_array(t), dtype=np.float32))


def agree(what, ours, independent, tolerance=AGREEMENT):
    """Stops the script when a reference and its independent computation differ."""
    ours, independent = as_array(ours), as_array(independent).astype(np.float64)
    assert ours.shape == independent.shape, f"{what}: shape {ours.shape} against {independent.shape}"
    error = np.max(np.abs(ours - independent) / np.maximum(1.0, np.abs(independent)))
    assert error <= tolerance, f"{what}: relative error {error:.3e} against the independent computation"


def agree_all(case, ours, independent, tolerance=AGREEMENT):
    for name, value in independent.items():
        agree(f"{case} {name}", ours[name], value, tolerance)


def leaf(array):
    """A double tensor of a float32 input that collects its gradient."""
    return torch.from_numpy(array.astype(np.float64)).requires_grad_(True)


def gradients(y, dy, **leaves):
    """Back-propagates dy from y; the gradients of the leaves, named d<leaf>."""
    y.backward(torch.from_numpy(dy.astype(np.float64)))
    return {f"d{name}": t.grad for name, t in leaves.items()}


def with_params(module, **values):
    with torch.no_grad():
        for name, value in values.items():
            getattr(module, name).copy_(torch.from_numpy(value))
    return module


def backprop(module, x, dy, forward=None):
    """The module's y for x (or forward's, a function calling the module) and the gradients of
    sum(y * dy) for x and the module's parameters."""
    module.zero_grad(set_to_none=True)
    x = torch.from_numpy(x).requires_grad_(True)
    y = (forward or module)(x)
    y.backward(torch.from_numpy(dy).to(y.dtype))
    return dict(y=y, dx=x.grad, **{f"d{name}": p.grad for name, p in module.named_parameters()})


# ---- torch's layers ----

def affine_layer(case, module, x, parameter_shape):
    """GroupNorm and LayerNorm: random weight and bias, training forward and backward."""
    with_params(module, weight=scales(*parameter_shape), bias=uniform(*parameter_shape))
    dy = uniform(*x.shape)
    save(case, x=x, dy=dy, weight=module.weight, bias=module.bias, **backprop(module, x, dy))


def group_norm(case, groups, shape):
    affine_layer(case, torch.nn.GroupNorm(groups, shape[1]), channel_data(shape), (shape[1],))


def layer_norm(case, shape, normalized_shape):
    affine_layer(case, torch.nn.LayerNorm(normalized_shape), channel_data(shape), normalized_shape)


def expect_instance_running_statistics(case, module, batches):
    """semantics: running statistics move by the mean over samples of the per-instance mean and
    unbiased variance; checked against torch so that the fixtures and the rule cannot disagree."""
    m = module.momentum
    mean, var = np.zeros(module.num_features), np.ones(module.num_features)
    for x in batches:
        spatial = tuple(range(2, x.ndim))
        mean = (1 - m) * mean + m * x.astype(np.float64).mean(spatial).mean(0)
        var = (1 - m) * var + m * x.astype(np.float64).var(spatial, ddof=1).mean(0)
    # torch computes these in float32.
    agree(f"{case} running_mean", module.running_mean, mean, 1e-6)
    agree(f"{case} running_var", module.running_var, var, 1e-6)


def instance_norm(case, kind, shape, affine, track):
    module = kind(shape[1], affine=affine, track_running_stats=track)
    x, dy = channel_data(shape), uniform(*shape)
    fixtures = dict(x=x, dy=dy)
    if affine:
        with_params(module, weight=scales(shape[1]), bias=uniform(shape[1]))
        fixtures.update(weight=module.weight, bias=module.bias)
    fixtures.update(backprop(module, x, dy))
    if track:
        x2 = channel_data(shape)
        with torch.no_grad():
            module(torch.from_numpy(x2))
        expect_instance_running_statistics(case, module, [x, x2])
        fixtures.update(x2=x2, running_mean=module.running_mean.clone(), running_var=module.running_var.clone())
        module.eval()
        fixtures.update({f"eval_{name}": value for name, value in backprop(module, x, dy).items()})
    save(case, **fixtures)


# ---- reference implementations (torch autograd) ----

def per_channel(t, ndim):
    """A (C,) tensor shaped to broadcast over an (N, C, *) input of ndim dimensions."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


def batch_statistics(x):
    """Per-channel mean and biased variance over (N, spatial), and the count of values per channel."""
    axes = [0] + list(range(2, x.dim()))
    return x.mean(axes), x.var(axes, unbiased=False), x.numel() // x.shape[1]


def moving_average(running_mean, running_var, mean, var, count, momentum):
    """BatchNorm's update of the running statistics: the unbiased variance is averaged."""
    unbiased = var.detach() * count / (count - 1)
    return ((1 - momentum) * running_mean + momentum * mean.detach(),
            (1 - momentum) * running_var + momentum * unbiased)


def batch_renorm(x, weight, bias, running_mean, running_var, rmax, dmax, momentum=0.01, eps=1e-5):
    """Batch Renormalization's training step (Ioffe 2017): y, and the running statistics after it."""
    mean, var, count = batch_statistics(x)
    sigma_batch = torch.sqrt(var + eps)
    sigma = torch.sqrt(running_var + eps)
    # r and d pull towards the running statistics but are constants in the backward.
    r = (sigma_batch / sigma).detach().clamp(1 / rmax, rmax)
    d = ((mean - running_mean) / sigma).detach().clamp(-dmax, dmax)
    n = x.dim()
    xhat = (x - per_channel(mean, n)) / per_channel(sigma_batch, n) * per_channel(r, n) + per_channel(d, n)
    y = per_channel(weight, n) * xhat + per_channel(bias, n)
    return (y,) + moving_average(running_mean, running_var, mean, var, count, momentum)


def ghost_batch_norm(x, weight, bias, running_mean, running_var, virtual_batch, momentum=0.1, eps=1e-5):
    """Ghost Batch Normalization's training step: BatchNorm over each chunk of virtual_batch samples
    in order (the last one smaller when N does not divide), with the same weight and bias, moving
    the same running statistics once per chunk. y, the running statistics after, the chunk count."""
    outputs = []
    n = x.dim()
    for chunk in x.split(virtual_batch):
        mean, var, count = batch_statistics(chunk)
        xhat = (chunk - per_channel(mean, n)) / per_channel(torch.sqrt(var + eps), n)
        outputs.append(per_channel(weight, n) * xhat + per_channel(bias, n))
        running_mean, running_var = moving_average(running_mean, running_var, mean, var, count, momentum)
    return torch.cat(outputs), running_mean, running_var, len(outputs)


def filter_response_norm_tlu(x, weight, bias, tau, eps=1e-6):
    """FilterResponseNorm2d with TLU (Singh & Krishnan 2019); a tie y == tau sends its gradient to y."""
    nu2 = x.pow(2).mean((2, 3), keepdim=True)
    y = per_channel(weight, 4) * x * torch.rsqrt(nu2 + eps) + per_channel(bias, 4)
    return torch.where(y >= per_channel(tau, 4), y, per_channel(tau, 4))


def std_conv2d(x, weight, bias, stride=1, padding=1, eps=1e-6):
    """Conv2d whose weight is standardized per output filter over (C_in, kh, kw) (Qiao et al. 2019)."""
    axes = (1, 2, 3)
    mean = weight.mean(axes, keepdim=True)
    var = weight.var(axes, unbiased=False, keepdim=True)
    return F.conv2d(x, (weight - mean) / torch.sqrt(var + eps), bias, stride, padding)


# ---- independent computations the references are checked against ----

def batch_norm_eval(x, dy, weight, bias, running_mean, running_var):
    """nn.BatchNorm2d in eval, loaded with a state_dict of these names (renorm and ghost eval)."""
    module = torch.nn.BatchNorm2d(weight.shape[0]).double()
    state = dict(weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    module.load_state_dict({name: torch.as_tensor(value) for name, value in state.items()}, strict=False)
    module.eval()
    return {f"eval_{name}": value for name, value in backprop(module, x.astype(np.float64), dy).items()}


def batch_renorm_numpy(x, dy, weight, bias, running_mean, running_var, rmax, dmax, momentum=0.01, eps=1e-5):
    """Batch Renorm's step from its closed forms: r and d constants, so dx is BatchNorm's dx scaled
    by r. Also returns the r and d before clipping."""
    x, dy, weight, bias, running_mean, running_var = (a.astype(np.float64) for a in
                                                      (x, dy, weight, bias, running_mean, running_var))
    axes, c = (0, 2, 3), (lambda v: v[None, :, None, None])
    mean, var, count = x.mean(axes), x.var(axes), x.size // x.shape[1]
    sigma_batch, sigma = np.sqrt(var + eps), np.sqrt(running_var + eps)
    raw_r, raw_d = sigma_batch / sigma, (mean - running_mean) / sigma
    r, d = np.clip(raw_r, 1 / rmax, rmax), np.clip(raw_d, -dmax, dmax)
    centred = (x - c(mean)) / c(sigma_batch)
    xhat = centred * c(r) + c(d)
    dcentred = dy * c(weight * r)
    dx = (dcentred - dcentred.mean(axes, keepdims=True)
          - centred * (dcentred * centred).mean(axes, keepdims=True)) / c(sigma_batch)
    outputs = dict(y=c(weight) * xhat + c(bias), dx=dx, dweight=(dy * xhat).sum(axes), dbias=dy.sum(axes),
                   running_mean_after=(1 - momentum) * running_mean + momentum * mean,
                   running_var_after=(1 - momentum) * running_var + momentum * var * count / (count - 1))
    return outputs, raw_r, raw_d


def frn_tlu_numpy(x, dy, weight, bias, tau, eps=1e-6):
    """FRN + TLU and its gradients from the closed forms, with the margin of y from tau."""
    x, dy, weight, bias, tau = (a.astype(np.float64) for a in (x, dy, weight, bias, tau))
    c = lambda v: v[None, :, None, None]
    scale = 1 / np.sqrt((x * x).mean((2, 3), keepdims=True) + eps)
    xhat = x * scale
    y = c(weight) * xhat + c(bias)
    passes = y >= c(tau)
    dy_pass = np.where(passes, dy, 0.0)
    dxhat = dy_pass * c(weight)
    # xhat_i = x_i * (mean(x^2) + eps)^(-1/2): d xhat_i / d x_j = scale [i == j] - scale^3 x_i x_j / (H W)
    dx = scale * dxhat - scale ** 3 * x * (dxhat * x).mean((2, 3), keepdims=True)
    outputs = dict(y=np.where(passes, y, c(tau)), dx=dx, dweight=(dy_pass * xhat).sum((0, 2, 3)),
                   dbias=dy_pass.sum((0, 2, 3)), dtau=np.where(passes, 0.0, dy).sum((0, 2, 3)))
    return outputs, np.abs(y - c(tau)), passes


def conv2d_numpy(x, weight, padding):
    """Stride-1 convolution as a sum over the kernel's taps; also returns the padded input."""
    p = padding
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    kh, kw = weight.shape[2:]
    height, width = padded.shape[2] - kh + 1, padded.shape[3] - kw + 1
    y = np.zeros((x.shape[0], weight.shape[0], height, width))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nchw,oc->nohw", padded[:, :, i:i + height, j:j + width], weight[:, :, i, j])
    return y, padded


def std_conv2d_numpy(x, dy, weight, bias, padding=1, eps=1e-6):
    """Weight-standardized convolution and its gradients: the convolution's backward by taps, then
    the standardization's backward (that of a normalization over (C_in, kh, kw) per filter)."""
    x, dy, weight = (a.astype(np.float64) for a in (x, dy, weight))
    axes = (1, 2, 3)
    centred = weight - weight.mean(axes, keepdims=True)
    scale = 1 / np.sqrt((centred * centred).mean(axes, keepdims=True) + eps)
    standardized = centred * scale
    y, padded = conv2d_numpy(x, standardized, padding)
    kh, kw = weight.shape[2:]
    height, width = y.shape[2:]
    dstandardized = np.zeros_like(weight)
    dpadded = np.zeros_like(padded)
    for i in range(kh):
        for j in range(kw):
            window = (slice(None), slice(None), slice(i, i + height), slice(j, j + width))
            dstandardized[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, padded[window])
            dpadded[window] += np.einsum("nohw,oc->nchw", dy, standardized[:, :, i, j])
    dweight = scale * (dstandardized - dstandardized.mean(axes, keepdims=True)
                       - standardized * (dstandardized * standardized).mean(axes, keepdims=True))
    p = padding
    outputs = dict(dx=dpadded[:, :, p:padded.shape[2] - p, p:padded.shape[3] - p], dweight=dweight)
    if bias is not None:
        y = y + bias.astype(np.float64)[None, :, None, None]
        outputs["dbias"] = dy.sum((0, 2, 3))
    return dict(y=y, **outputs)


# ---- the reference fixtures ----

# Per channel: the wanted sigma_B / sigma (r before clipping) and (mu_B - mu) / sigma (d before
# clipping). With rmax 3, dmax 5: r clipped above, below; d clipped above, below; neither, twice.
RENORM_TARGETS = [(5.0, 0.5), (0.2, -1.0), (1.5, 8.0), (0.7, -7.0), (1.8, 2.0), (0.6, -1.5)]
RENORM_CLIPS_R = [True, True, False, False, False, False]
RENORM_CLIPS_D = [False, False, True, True, False, False]


def batch_renorm_inputs(eps=1e-5):
    """x, weight, bias, dy and running statistics chosen from x's batch statistics by RENORM_TARGETS."""
    x = channel_data((4, len(RENORM_TARGETS), 3, 3))
    mean, var = x.astype(np.float64).mean((0, 2, 3)), x.astype(np.float64).var((0, 2, 3))
    ratio, offset = np.array(RENORM_TARGETS).T
    sigma = np.sqrt(var + eps) / ratio
    running_mean = (mean - offset * sigma).astype(np.float32)
    running_var = (sigma * sigma - eps).astype(np.float32)
    channels = x.shape[1]
    return dict(x=x, weight=scales(channels), bias=uniform(channels), dy=uniform(*x.shape),
                running_mean=running_mean, running_var=running_var)


def batch_renorm2d(case, inputs, rmax, dmax):
    x, weight, bias = leaf(inputs["x"]), leaf(inputs["weight"]), leaf(inputs["bias"])
    running = [torch.from_numpy(inputs[name].astype(np.float64)) for name in ("running_mean", "running_var")]
    y, running_mean, running_var = batch_renorm(x, weight, bias, *running, rmax, dmax)
    fixtures = dict(y=y, running_mean_after=running_mean, running_var_after=running_var,
                    **gradients(y, inputs["dy"], x=x, weight=weight, bias=bias))
    fixtures.update(batch_norm_eval(inputs["x"], inputs["dy"], inputs["weight"], inputs["bias"],
                                    running_mean, running_var))

    independent, raw_r, raw_d = batch_renorm_numpy(rmax=rmax, dmax=dmax, **inputs)
    agree_all(case, fixtures, independent)
    if rmax > 1:
        clips_r = list((raw_r < 1 / rmax) | (raw_r > rmax))
        clips_d = list(np.abs(raw_d) > dmax)
        assert clips_r == RENORM_CLIPS_R and clips_d == RENORM_CLIPS_D, f"{case}: r {raw_r}, d {raw_d}"
    else:
        # rmax 1, dmax 0 is BatchNorm with momentum 0.01, from the same running statistics.
        module = torch.nn.BatchNorm2d(x.shape[1], momentum=0.01).double()
        with_params(module, weight=inputs["weight"].astype(np.float64), bias=inputs["bias"].astype(np.float64),
                    running_mean=inputs["running_mean"].astype(np.float64),
                    running_var=inputs["running_var"].astype(np.float64))
        batch_norm = backprop(module, inputs["x"].astype(np.float64), inputs["dy"])
        agree_all(case, fixtures, dict(batch_norm, running_mean_after=module.running_mean,
                                       running_var_after=module.running_var))
    save(case, **inputs, **fixtures)


def ghost_batch_norm2d(case, shape, virtual_batch):
    channels = shape[1]
    inputs = dict(x=channel_data(shape), weight=scales(channels), bias=uniform(channels), dy=uniform(*shape))
    x, weight, bias = leaf(inputs["x"]), leaf(inputs["weight"]), leaf(inputs["bias"])
    y, running_mean, running_var, chunks = ghost_batch_norm(
        x, weight, bias, torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64),
        virtual_batch)
    fixtures = dict(y=y, running_mean=running_mean, running_var=running_var, num_batches_tracked=np.array([chunks]),
                    **gradients(y, inputs["dy"], x=x, weight=weight, bias=bias))
    fixtures.update(batch_norm_eval(inputs["x"], inputs["dy"], inputs["weight"], inputs["bias"],
                                    running_mean, running_var))

    # One nn.BatchNorm2d over the chunks of x.split, concatenated.
    module = with_params(torch.nn.BatchNorm2d(channels).double(), weight=inputs["weight"].astype(np.float64),
                         bias=inputs["bias"].astype(np.float64))
    split = backprop(module, inputs["x"].astype(np.float64), inputs["dy"],
                     forward=lambda t: torch.cat([module(chunk) for chunk in t.split(virtual_batch)]))
    split.update(running_mean=module.running_mean,
                 running_var=module.running_var, num_batches_tracked=module.num_batches_tracked.reshape(1))
    agree_all(case, fixtures, split)
    save(case, **inputs, **fixtures)


def filter_response_norm2d(case, shape):
    channels = shape[1]
    inputs = dict(x=channel_data(shape), weight=scales(channels), bias=uniform(channels, low=-0.5, high=0.5),
                  tau=uniform(channels, low=-0.5, high=0.5), dy=uniform(*shape))
    x, weight, bias, tau = (leaf(inputs[name]) for name in ("x", "weight", "bias", "tau"))
    y = filter_response_norm_tlu(x, weight, bias, tau)
    fixtures = dict(y=y, **gradients(y, inputs["dy"], x=x, weight=weight, bias=bias, tau=tau))

    independent, margin, passes = frn_tlu_numpy(**inputs)
    # Away from ties, so that float rounding cannot move a value to the other side of tau.
    assert margin.min() > 1e-3, f"{case}: a value {margin.min():.2e} from tau"
    assert 0.1 < passes.mean() < 0.9, f"{case}: {passes.mean():.0%} of the values pass the TLU"
    agree_all(case, fixtures, independent)
    save(case, **inputs, **fixtures)


def std_conv2d_case(case, x_shape, out_channels, bias):
    in_channels = x_shape[1]
    # An offset per filter, so that the standardization's centring matters.
    weight = uniform(out_channels, in_channels, 3, 3) + uniform(out_channels, 1, 1, 1, low=-2.0, high=2.0)
    inputs = dict(x=uniform(*x_shape, low=-2.0, high=2.0), weight=weight)
    if bias:
        inputs["bias"] = uniform(out_channels)
    leaves = {name: leaf(value) for name, value in inputs.items()}
    y = std_conv2d(leaves["x"], leaves["weight"], leaves.get("bias"))
    inputs["dy"] = uniform(*y.shape)
    fixtures = dict(y=y, **gradients(y, inputs["dy"], **leaves))

    agree_all(case, fixtures, std_conv2d_numpy(inputs["x"], inputs["dy"], inputs["weight"], inputs.get("bias")))
    save(case, **inputs, **fixtures)


def main():
    group_norm("group_norm_g3_c6", 3, (3, 6, 4, 5))
    group_norm("group_norm_g1_c4", 1, (2, 4, 3, 5))
    group_norm("group_norm_g4_c4", 4, (2, 4, 3, 5))
    layer_norm("layer_norm_chw", (3, 4, 5, 6), (4, 5, 6))
    layer_norm("layer_norm_last", (4, 7), (7,))
    for dims, kind, shape in [(1, torch.nn.InstanceNorm1d, (3, 4, 6)), (2, torch.nn.InstanceNorm2d, (3, 4, 3, 5))]:
        for affine in (False, True):
            for track in (False, True):
                case = f"instance_norm{dims}d" + ("_affine" if affine else "") + ("_track" if track else "")
                instance_norm(case, kind, shape, affine, track)

    renorm_inputs = batch_renorm_inputs()
    batch_renorm2d("batch_renorm2d_clipped", renorm_inputs, rmax=3.0, dmax=5.0)
    batch_renorm2d("batch_renorm2d_r1_d0", renorm_inputs, rmax=1.0, dmax=0.0)
    ghost_batch_norm2d("ghost_batch_norm2d_vb3", (7, 3, 2, 2), virtual_batch=3)
    filter_response_norm2d("filter_response_norm2d", (2, 4, 3, 4))
    std_conv2d_case("std_conv2d_bias", (2, 3, 5, 5), 4, bias=True)
    std_conv2d_case("std_conv2d_nobias", (2, 2, 4, 6), 3, bias=False)
    # Last, so that the cases above keep the draws they were written with.
    group_norm("group_norm_g2_c32_nc", 2, (5, 32))
    group_norm("group_norm_g2_c6_short", 2, (3, 6, 7))
    print("torch", torch.__version__, "fixtures of the normalization family written to", HERE)


if __name__ == "__main__":
    main()
