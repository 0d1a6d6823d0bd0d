// The models the experiments train, by name:
//   seed-cnn           the seed document's CNN with fc1 corrected to 64*7*7 inputs
//   seed-cnn-verbatim  the seed's CNN exactly as written: fc1 = Linear(64*28*28, 128), which its
//                      first forward rejects with an error naming fc1, 50176 and 3136
//   paper-mlp          the MLP of Ioffe & Szegedy's MNIST experiment: 784-100-100-100-10, sigmoid,
//                      the norm layer before each hidden nonlinearity (no bias where the norm
//                      removes it: batch, batch-renorm, ghost)
// The block after each hidden layer (norm, noise of noisy BN, nonlinearity; BN and ReLU fused
// where nothing comes between them) is experiments/norm_activation.hpp's: every norm layer with
// its weight and bias (InstanceNorm2d with affine, without running statistics), LayerNorm over
// (C, H, W) after a Conv2d, FRN's TLU in place of the ReLU. The norms defined over spatial
// positions only (instance, frn) leave the seed CNN's bn_fc1 out, its ReLU alone, and are an error
// for paper-mlp, whose every norm layer follows a Linear.
// Parameter and buffer names are those of the matching PyTorch module's state_dict. A model may
// also come from a spec file instead (experiments/model_spec.hpp; ModelConfig::name "spec").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "experiments/model_config.hpp"
#include "layers/init.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

const std::vector<std::string>& model_names();

// Whether the model takes images flattened to (N, 784) rather than (N, 1, 28, 28).
bool model_takes_flat_input(const ModelConfig& config);

// Appends the Dropout layer of probability p, or nothing for p = 0; its generator is seeded by
// make_model once every initialization draw is done.
void add_dropout(Sequential<float>& model, const std::string& name, double p);

// Builds the model with every random draw from `rng`, a built-in or config.spec's (build_spec_model).
// An unknown name, a norm setting out of its
// range (model_config.hpp's check_norm_settings) or a norm the model cannot take is a
// std::invalid_argument saying so.
std::shared_ptr<Sequential<float>> make_model(const ModelConfig& config, Rng& rng);

}  // namespace xgrad
