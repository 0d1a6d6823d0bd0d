#include "layers/normalization/sync_batch_norm.hpp"

#include <array>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "layers/normalization/backward_sums.hpp"
#include "layers/normalization/elementwise.hpp"
#include "layers/normalization/normalization_node.hpp"

namespace xgrad {

namespace {

// Per rank, one record: whether its input passed the layer's own checks, its N, C, S, then its
// batch's mean and variance per channel of the layer (zeros for a rank without samples or whose
// input was refused). Every rank's layer must have the same channels (every rank builds the same
// model), so that the records have one size.
constexpr std::size_t kHeader = 4;

// Every rank's (N, C, S), from the gathered records (`refused` holds this rank's message if its
// input was refused): a ShapeError on every rank alike, rather than on one rank while the others
// wait in the next collective, when some rank's input was refused or S disagrees.
std::vector<ChannelShape> shapes_of(const std::vector<double>& every, std::size_t record, const std::string& refused,
                                    const std::string& where) {
    if (!refused.empty()) throw ShapeError(refused);
    const std::size_t ranks = every.size() / record;
    std::vector<ChannelShape> shapes;
    for (std::size_t r = 0; r < ranks; ++r) {
        const double* h = every.data() + r * record;
        if (h[0] == 0.0) {
            throw ShapeError(where + ": rank " + std::to_string(r) + " of " + std::to_string(ranks) +
                             " refused its input (its own message says why)");
        }
        shapes.push_back({static_cast<std::size_t>(h[1]), static_cast<std::size_t>(h[2]), static_cast<std::size_t>(h[3])});
    }
    for (std::size_t r = 1; r < ranks; ++r) {
        if (shapes[r].s != shapes[0].s) {  // C is the layer's on every rank that accepted its input
            throw ShapeError(where + ": ranks disagree on the input's spatial size: rank 0 has (N, C, S) = " +
                             shape_str(std::array{shapes[0].n, shapes[0].c, shapes[0].s}) + ", rank " +
                             std::to_string(r) + " has " + shape_str(std::array{shapes[r].n, shapes[r].c, shapes[r].s}));
        }
    }
    return shapes;
}

// The moments of the global batch from every rank's, combined in rank order by Chan et al.'s
// pairwise update: with counts a and b, mean = mean_a + δ·b/(a + b) and
// var·(a + b) = var_a·a + var_b·b + δ²·a·b/(a + b), δ = mean_b - mean_a. A rank with no element
// adds nothing; the first rank with elements is taken as it is, so one rank gives its own bits.
Moments combine(const std::vector<ChannelShape>& shapes, const std::vector<double>& every, std::size_t record,
                std::size_t channels) {
    Moments out{std::vector<double>(channels, 0.0), std::vector<double>(channels, 0.0)};
    double count = 0.0;
    for (std::size_t r = 0; r < shapes.size(); ++r) {
        const double b = static_cast<double>(shapes[r].per_channel());
        if (b == 0.0) continue;
        const double* mean_b = every.data() + r * record + kHeader;
        const double* var_b = mean_b + channels;
        const double a = count;
        count += b;
        for (std::size_t c = 0; c < channels; ++c) {
            if (a == 0.0) {
                out.mean[c] = mean_b[c];
                out.var[c] = var_b[c];
                continue;
            }
            const double delta = mean_b[c] - out.mean[c];
            out.mean[c] += delta * (b / count);
            out.var[c] = (out.var[c] * a + var_b[c] * b + delta * delta * (a * b / count)) / count;
        }
    }
    return out;
}

// The backward stages with the all-reduce of the sums between them (see the header).
struct SyncBackward {
    std::shared_ptr<Communicator> communicator;
    Grouping global;  // the global batch's (N, C, S): its group size is the count the statistics came from

    template <class T, class Epilogue>
    std::vector<std::array<double, Epilogue::extra_sums>> operator()(const Grouping& local, const NormalizedBatch& batch,
                                                                     GradientThrough through, const T* dy, const T* x,
                                                                     const T* gamma, const T* beta, const Epilogue& epilogue,
                                                                     const NormalizeGrads<T>& grads) const {
        static_assert(Epilogue::extra_sums == 0, "an epilogue's own sums would need their all-reduce too");
        constexpr std::size_t K = 2;
        const ChannelShape view = local.row_view();
        const std::size_t channels = view.c;
        const Rows all = Rows::all(channels);
        std::optional<Affine<T>> forward;
        if constexpr (Epilogue::gate_reads_value) {
            forward.emplace(view);
            fold_forward(local, batch.norm, gamma, beta, nullptr, all, *forward);
        }
        const Affine<T>* fwd = forward ? &*forward : nullptr;
        std::vector<RowSums<Epilogue>> sums(channels, RowSums<Epilogue>{});
        if (view.size() > 0) backward_sums(view, std::span<const double>(batch.norm.mean), fwd, epilogue, dy, x, all, std::span(sums));
        std::vector<double> dgamma(grads.dgamma ? channels : 0), dbeta(grads.dbeta ? channels : 0);
        fold_backward<T, K>(local, batch.norm, gamma, nullptr, through, std::span<const RowSums<Epilogue>>(sums), all,
                            nullptr, dgamma, dbeta);
        for (std::size_t c = 0; c < dgamma.size(); ++c) grads.dgamma[c] = static_cast<T>(dgamma[c]);
        for (std::size_t c = 0; c < dbeta.size(); ++c) grads.dbeta[c] = static_cast<T>(dbeta[c]);
        // Every rank, whether or not it wants dx: the all-reduce is collective.
        std::vector<double> flat(channels * K);
        for (std::size_t c = 0; c < channels; ++c) std::copy(sums[c].begin(), sums[c].end(), flat.begin() + c * K);
        all_reduce_sum(*communicator, flat);
        for (std::size_t c = 0; c < channels; ++c) std::copy_n(flat.begin() + c * K, K, sums[c].begin());
        if (grads.dx && view.size() > 0) {
            InputGrad<T> input_grad(view);
            input_grad.x_term = through.mean || through.variance;
            fold_backward<T, K>(global, batch.norm, gamma, nullptr, through, std::span<const RowSums<Epilogue>>(sums),
                                all, &input_grad, {}, {});
            apply_backward(view, input_grad, fwd, epilogue, dy, x, grads.dx, all);
        }
        return std::vector<std::array<double, Epilogue::extra_sums>>(channels);
    }
};

}  // namespace

template <class T>
SyncBatchNorm<T>::SyncBatchNorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout,
                                std::size_t num_features, BatchNormOptions options, bool relu,
                                std::shared_ptr<Communicator> communicator)
    : BatchNorm<T>(kind, ranks, layout, num_features, options, relu), communicator_(std::move(communicator)) {
    if (!communicator_) throw std::invalid_argument(std::string(kind) + ": no communicator given");
}

template <class T>
Var<T> SyncBatchNorm<T>::forward(const Var<T>& x) {
    // As torch's: the global batch's statistics in training only.
    if (!this->is_training()) return BatchNorm<T>::forward(x);
    const Shape shape = x.shape();
    const std::string where = this->where();
    std::string refused;
    ChannelShape local;
    try {
        this->check_input(shape);
        this->check_state();
        local = channel_shape(shape);
    } catch (const ShapeError& e) {
        refused = e.what();
    }
    // One collective: every rank's shape and moments together.
    const std::size_t channels = this->num_features();
    const std::size_t record = kHeader + 2 * channels;
    std::vector<double> mine(record, 0.0);
    mine[0] = refused.empty() ? 1.0 : 0.0;
    mine[1] = static_cast<double>(local.n);
    mine[2] = static_cast<double>(local.c);
    mine[3] = static_cast<double>(local.s);
    const Grouping grouping = Grouping::per_channel(local);
    if (refused.empty() && local.per_channel() > 0) {
        const Moments m = batch_moments(grouping, x.value().data());
        std::copy(m.mean.begin(), m.mean.end(), mine.begin() + kHeader);
        std::copy(m.var.begin(), m.var.end(), mine.begin() + static_cast<std::ptrdiff_t>(kHeader + channels));
    }
    Communicator& communicator = *communicator_;
    std::vector<double> every(static_cast<std::size_t>(communicator.size()) * record);
    communicator.all_gather(mine, every);
    const std::vector<ChannelShape> shapes = shapes_of(every, record, refused, where);
    ChannelShape total{0, local.c, local.s};
    for (const ChannelShape& s : shapes) total.n += s.n;
    if (total.per_channel() <= 1) {
        throw ShapeError(where + ": expected more than 1 value per channel over the " + std::to_string(shapes.size()) +
                         " ranks' batches in training, got " + std::to_string(total.per_channel()) +
                         " (this rank's input " + shape_str(shape) + ")");
    }
    const Grouping global = Grouping::per_channel(total);
    const Moments moments = combine(shapes, every, record, channels);

    NormalizedBatch batch{{moments.mean, std::vector<double>(channels)}, std::nullopt};
    for (std::size_t c = 0; c < channels; ++c) batch.norm.invstd[c] = inverse_std(moments.var[c], this->options().eps);
    NormalizeOptions<T> affine;  // gamma and beta: normalize_with reads no other option
    affine.gamma = this->weight() ? this->weight()->value().data() : nullptr;
    affine.beta = this->bias() ? this->bias()->value().data() : nullptr;
    // Moved by the global batch, counted once the batch is accepted, as BatchNorm's.
    if (std::int64_t* tracked = this->batches_tracked()) {
        const std::int64_t batches = *tracked + 1;
        move_running_statistics(global, moments, Rows::all(channels),
                                RunningStats<T>{this->running_mean_buffer()->data(), this->running_var_buffer()->data(),
                                                this->running_factor(batches)});
        *tracked = batches;
    }
    const auto run = [&](const auto& epilogue) {
        xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
        if (local.per_channel() > 0) normalize_with(grouping, batch.norm, x.value().data(), affine, epilogue, y.data());
        return normalization_node(this->fused_relu() ? "sync_batch_norm_relu" : "sync_batch_norm", x, std::move(y),
                                  grouping, std::move(batch), GradientThrough::batch(),
                                  NormalizationParameters<T>{this->weight(), this->bias(), {}}, epilogue,
                                  SyncBackward{communicator_, global});
    };
    return this->fused_relu() ? run(ReluEpilogue{}) : run(NoEpilogue{});
}

template class SyncBatchNorm<float>;
template class SyncBatchNorm<double>;

}  // namespace xgrad
