#include "experiments/mlp_demo.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <random>
#include <vector>

#include <xtensor/xrandom.hpp>
#include <xtensor/xview.hpp>

#include "autodiff/autodiff.hpp"
#include "experiments/spirals.hpp"

namespace xgrad {

namespace {

constexpr std::size_t classes = 3;
constexpr std::size_t hidden = 64;

Var<float> parameter(std::mt19937_64& rng, std::size_t rows, std::size_t cols) {
    // Kaiming-uniform bound as torch.nn.Linear uses for its weight: 1/sqrt(fan_in).
    const float bound = 1.0f / std::sqrt(static_cast<float>(rows));
    std::uniform_real_distribution<float> u(-bound, bound);
    xt::xarray<float> w = xt::xarray<float>::from_shape({rows, cols});
    for (auto& v : w) v = u(rng);
    return Var<float>(std::move(w), true);
}

xt::xarray<float> one_hot(const xt::xarray<std::int64_t>& labels) {
    xt::xarray<float> y = xt::zeros<float>({labels.size(), classes});
    for (std::size_t i = 0; i < labels.size(); ++i) y(i, static_cast<std::size_t>(labels(i))) = 1.0f;
    return y;
}

struct Mlp {
    std::vector<Var<float>> params;

    explicit Mlp(std::mt19937_64& rng)
        : params{parameter(rng, 2, hidden), parameter(rng, 1, hidden), parameter(rng, hidden, hidden),
                 parameter(rng, 1, hidden), parameter(rng, hidden, classes), parameter(rng, 1, classes)} {}

    Var<float> logits(const Var<float>& x) const {
        Var<float> h1 = relu(matmul(x, params[0]) + params[1]);
        Var<float> h2 = relu(matmul(h1, params[2]) + params[3]);
        return matmul(h2, params[4]) + params[5];
    }
};

// Mean cross-entropy of logits against one-hot targets.
Var<float> cross_entropy(const Var<float>& logits, const Var<float>& targets) {
    return -mean(sum(targets * log_softmax(logits, 1), {1}));
}

double accuracy(const Var<float>& logits, const xt::xarray<std::int64_t>& labels) {
    std::size_t right = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        std::size_t best = 0;
        for (std::size_t k = 1; k < classes; ++k) best = logits.value()(i, k) > logits.value()(i, best) ? k : best;
        right += static_cast<std::int64_t>(best) == labels(i);
    }
    return static_cast<double>(right) / static_cast<double>(labels.size());
}

}  // namespace

double run_mlp_demo(const MlpDemoConfig& config, std::ostream& out) {
    const Spirals data = make_spirals(500, classes, 0.05f, config.seed);
    const std::size_t n = data.labels.size();
    std::mt19937_64 rng(config.seed);
    Mlp model(rng);
    const Var<float> all_x(data.points);
    const Var<float> all_y(one_hot(data.labels));

    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::size_t cursor = n;
    out << "step      loss   train_acc\n";
    for (std::size_t step = 1; step <= config.steps; ++step) {
        if (cursor + config.batch > n) {
            std::shuffle(order.begin(), order.end(), rng);
            cursor = 0;
        }
        const std::vector<std::size_t> rows(order.begin() + static_cast<std::ptrdiff_t>(cursor),
                                            order.begin() + static_cast<std::ptrdiff_t>(cursor + config.batch));
        cursor += config.batch;
        const Var<float> x(xt::xarray<float>(xt::view(data.points, xt::keep(rows), xt::all())));
        const Var<float> y(xt::xarray<float>(xt::view(all_y.value(), xt::keep(rows), xt::all())));

        for (auto& p : model.params) p.zero_grad();
        const Var<float> loss = cross_entropy(model.logits(x), y);
        loss.backward();
        for (auto& p : model.params) p.mutable_value() -= config.lr * p.grad();

        if (step % config.report_every == 0 || step == 1) {
            NoGrad no_grad;
            const Var<float> logits = model.logits(all_x);
            out << std::setw(4) << step << std::fixed << std::setprecision(4) << std::setw(10)
                << cross_entropy(logits, all_y).value()() << std::setw(12) << accuracy(logits, data.labels) << "\n";
        }
    }
    NoGrad no_grad;
    return accuracy(model.logits(all_x), data.labels);
}

}  // namespace xgrad
