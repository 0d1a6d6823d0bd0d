#include "fuzz/tiny_model.hpp"

#include "layers/conv2d.hpp"
#include "layers/dropout.hpp"
#include "layers/init.hpp"
#include "layers/linear.hpp"
#include "layers/normalization/batch_norm.hpp"

namespace xgrad_fuzz {

std::shared_ptr<xgrad::Sequential<float>> tiny_model() {
    xgrad::Rng rng(0);
    auto model = std::make_shared<xgrad::Sequential<float>>();
    model->add("conv", std::make_shared<xgrad::Conv2d<float>>(1, 2, 3, 1, 0, true, rng));
    model->add("bn", std::make_shared<xgrad::BatchNorm2d<float>>(2));
    model->add("drop", std::make_shared<xgrad::Dropout<float>>(0.5, 0));
    model->add("fc", std::make_shared<xgrad::Linear<float>>(8, 3, true, rng));
    return model;
}

}  // namespace xgrad_fuzz
