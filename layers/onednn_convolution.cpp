#include "layers/onednn_convolution.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "autodiff/grad_write.hpp"
#include "autodiff/threads.hpp"

// libgomp's entry point (meson.build: the runtime Debian's libdnnl runs in), declared here rather
// than through a compiler's <omp.h>.
extern "C" void omp_set_num_threads(int threads);

namespace xgrad {

namespace {

struct ConvolutionShape {
    WindowGeometry input;  // (N, C, H, W), kernel, stride, padding and (OH, OW); N > 0
    std::size_t out_channels = 0;
    bool bias = false;
};

using dnnl::memory;
using Args = std::unordered_map<int, memory>;

// Every primitive here takes its scratch memory from its Convolution (used under that one's
// lock) rather than from oneDNN's library-wide buffer, which primitives running at once on two
// threads (runs training side by side) would share.
dnnl::primitive_attr user_scratchpad() {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return attr;
}

// One buffer for the scratch memory of several primitives that run one after the other: each
// primitive's memory object points into it. Allocated by oneDNN, with the alignment it gives its
// own memory.
class Scratchpad {
public:
    void need(const memory::desc& desc) { bytes_ = std::max(bytes_, desc.get_size()); }
    void allocate(const dnnl::engine& engine) {
        const auto bytes = static_cast<memory::dim>(std::max<std::size_t>(bytes_, 1));
        buffer_ = memory(memory::desc({bytes}, memory::data_type::u8, memory::format_tag::x), engine);
    }
    memory for_primitive(const dnnl::engine& engine, const memory::desc& desc) const {
        return memory(desc, engine, buffer_.get_data_handle());
    }

private:
    std::size_t bytes_ = 0;
    memory buffer_;
};

// A tensor as the caller holds it (NCHW, OIHW or a vector) and, where the primitive wants another
// layout, a buffer in that layout (allocated on first use) with the reorders between the two.
class LayoutPair {
public:
    LayoutPair(const dnnl::engine& engine, const memory::desc& user, const memory::desc& wanted, Scratchpad& scratch)
        : engine_(engine), user_(user, engine, DNNL_MEMORY_NONE), wanted_(wanted), same_(user == wanted) {
        if (same_) return;
        const dnnl::reorder::primitive_desc to_own(engine, user, engine, wanted, user_scratchpad());
        const dnnl::reorder::primitive_desc to_user(engine, wanted, engine, user, user_scratchpad());
        to_own_ = dnnl::reorder(to_own);
        to_user_ = dnnl::reorder(to_user);
        to_own_scratch_ = to_own.scratchpad_desc();
        to_user_scratch_ = to_user.scratchpad_desc();
        scratch.need(to_own_scratch_);
        scratch.need(to_user_scratch_);
    }

    // The primitive's view of the caller's `data`, reordered into the buffer if it differs.
    memory in(dnnl::stream& stream, const Scratchpad& scratch, const float* data) {
        user_.set_data_handle(const_cast<float*>(data));  // oneDNN reads it only
        if (same_) return user_;
        to_own_.execute(stream, {{DNNL_ARG_FROM, user_},
                                 {DNNL_ARG_TO, own()},
                                 {DNNL_ARG_SCRATCHPAD, scratch.for_primitive(engine_, to_own_scratch_)}});
        return own_;
    }
    // Where the primitive writes for the caller's `data`; finish() moves it there.
    memory out(float* data) {
        user_.set_data_handle(data);
        return same_ ? user_ : own();
    }
    void finish(dnnl::stream& stream, const Scratchpad& scratch) {
        if (same_) return;
        to_user_.execute(stream, {{DNNL_ARG_FROM, own_},
                                  {DNNL_ARG_TO, user_},
                                  {DNNL_ARG_SCRATCHPAD, scratch.for_primitive(engine_, to_user_scratch_)}});
    }

private:
    memory& own() {
        if (!own_) own_ = memory(wanted_, engine_);
        return own_;
    }

    dnnl::engine engine_;
    memory user_;
    memory::desc wanted_;
    bool same_;
    memory own_;
    dnnl::reorder to_own_, to_user_;
    memory::desc to_own_scratch_, to_user_scratch_;
};

memory::dims dims(std::size_t a, std::size_t b, std::size_t c, std::size_t d) {
    return {static_cast<memory::dim>(a), static_cast<memory::dim>(b), static_cast<memory::dim>(c),
            static_cast<memory::dim>(d)};
}

// The primitives of one shape, their layouts and scratch memory, and the lock that makes these one
// caller's at a time.
struct Convolution {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::mutex lock;
    Scratchpad scratch;
    dnnl::convolution_forward forward;
    dnnl::convolution_backward_data backward_data;
    dnnl::convolution_backward_weights backward_weights;
    memory::desc forward_scratch, data_scratch, weights_scratch;
    bool gy_layouts_agree = false;  // both backward primitives read gy in one layout
    std::unique_ptr<LayoutPair> x, w, y, dx, gy_data, w_data, x_weights, gy_weights, dw;
    memory b, db;

    explicit Convolution(const ConvolutionShape& s) {
        const WindowGeometry& g = s.input;
        using tag = memory::format_tag;
        const auto f32 = memory::data_type::f32;
        const memory::desc x_user(dims(g.n, g.c, g.h, g.w), f32, tag::nchw);
        const memory::desc w_user(dims(s.out_channels, g.c, g.kernel.h, g.kernel.w), f32, tag::oihw);
        const memory::desc y_user(dims(g.n, s.out_channels, g.oh, g.ow), f32, tag::nchw);
        const memory::desc b_user({static_cast<memory::dim>(s.out_channels)}, f32, tag::x);
        const auto any = [&](const memory::desc& d) { return memory::desc(d.dims(), f32, tag::any); };
        const memory::dims strides{static_cast<memory::dim>(g.stride.h), static_cast<memory::dim>(g.stride.w)};
        const memory::dims padding{static_cast<memory::dim>(g.padding.h), static_cast<memory::dim>(g.padding.w)};
        const auto algorithm = dnnl::algorithm::convolution_direct;
        const auto layouts = [&](const memory::desc& user, const memory::desc& wanted) {
            return std::make_unique<LayoutPair>(engine, user, wanted, scratch);
        };

        const auto forward_desc =
            s.bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm, any(x_user),
                                                     any(w_user), b_user, any(y_user), strides, padding, padding)
                   : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm, any(x_user),
                                                     any(w_user), any(y_user), strides, padding, padding);
        const dnnl::convolution_forward::primitive_desc forward_pd(forward_desc, user_scratchpad(), engine);
        forward = dnnl::convolution_forward(forward_pd);
        forward_scratch = forward_pd.scratchpad_desc();
        x = layouts(x_user, forward_pd.src_desc());
        w = layouts(w_user, forward_pd.weights_desc());
        y = layouts(y_user, forward_pd.dst_desc());

        const dnnl::convolution_backward_data::primitive_desc data_pd(
            dnnl::convolution_backward_data::desc(algorithm, any(x_user), any(w_user), any(y_user), strides, padding,
                                                  padding),
            user_scratchpad(), engine, forward_pd);
        backward_data = dnnl::convolution_backward_data(data_pd);
        data_scratch = data_pd.scratchpad_desc();
        dx = layouts(x_user, data_pd.diff_src_desc());
        gy_data = layouts(y_user, data_pd.diff_dst_desc());
        w_data = layouts(w_user, data_pd.weights_desc());

        const auto weights_desc =
            s.bias ? dnnl::convolution_backward_weights::desc(algorithm, any(x_user), any(w_user), b_user, any(y_user),
                                                              strides, padding, padding)
                   : dnnl::convolution_backward_weights::desc(algorithm, any(x_user), any(w_user), any(y_user),
                                                              strides, padding, padding);
        const dnnl::convolution_backward_weights::primitive_desc weights_pd(weights_desc, user_scratchpad(), engine,
                                                                            forward_pd);
        backward_weights = dnnl::convolution_backward_weights(weights_pd);
        weights_scratch = weights_pd.scratchpad_desc();
        x_weights = layouts(x_user, weights_pd.src_desc());
        gy_weights = layouts(y_user, weights_pd.diff_dst_desc());
        dw = layouts(w_user, weights_pd.diff_weights_desc());
        gy_layouts_agree = data_pd.diff_dst_desc() == weights_pd.diff_dst_desc();
        b = memory(b_user, engine, DNNL_MEMORY_NONE);
        db = memory(b_user, engine, DNNL_MEMORY_NONE);

        for (const memory::desc* d : {&forward_scratch, &data_scratch, &weights_scratch}) scratch.need(*d);
        scratch.allocate(engine);
    }
};

// A primitive's kernel is chosen for the thread count it is created with: that is part of the key.
auto key(const ConvolutionShape& s, int threads) {
    const WindowGeometry& g = s.input;
    return std::tuple{threads, g.n,        g.c,        g.h,         g.w,         g.kernel.h,    g.kernel.w, g.stride.h,
                      g.stride.w, g.padding.h, g.padding.w, s.out_channels, s.bias};
}

// Shapes whose primitives and buffers are kept: a training run's batch, its last partial batch and
// its evaluation batch, for each convolution of a small CNN. The least recently used goes first.
constexpr std::size_t kept_shapes = 16;

// The primitives of `s` for the threads the caller's TBB arena allows, created on first use and
// locked for the caller (kept alive by it, should the cache drop them meanwhile); OpenMP told that
// count, so that both runtimes use the same.
std::pair<std::shared_ptr<Convolution>, std::unique_lock<std::mutex>> convolution(const ConvolutionShape& s) {
    struct Kept {
        std::shared_ptr<Convolution> convolution;
        std::uint64_t last_use = 0;
    };
    static std::mutex cache_lock;
    static std::map<decltype(key(s, 0)), Kept> cache;
    static std::uint64_t uses = 0;
    const int threads = available_threads();
    omp_set_num_threads(threads);
    std::shared_ptr<Convolution> c;
    {
        const std::lock_guard guard(cache_lock);
        const auto k = key(s, threads);
        auto found = cache.find(k);
        if (found == cache.end()) {
            if (cache.size() == kept_shapes) {
                cache.erase(std::min_element(cache.begin(), cache.end(), [](const auto& a, const auto& b) {
                    return a.second.last_use < b.second.last_use;
                }));
            }
            found = cache.emplace(k, Kept{std::make_shared<Convolution>(s)}).first;
        }
        found->second.last_use = ++uses;
        c = found->second.convolution;
    }
    std::unique_lock locked(c->lock);
    return {std::move(c), std::move(locked)};
}

// y (N, out, OH, OW) = the convolution of x with w (out, C, kh, kw), plus b when shape.bias.
void onednn_convolution_forward(const ConvolutionShape& shape, const float* x, const float* w, const float* b,
                                float* y) {
    const auto [held, locked] = convolution(shape);
    Convolution& c = *held;
    Args args{{DNNL_ARG_SRC, c.x->in(c.stream, c.scratch, x)},
              {DNNL_ARG_WEIGHTS, c.w->in(c.stream, c.scratch, w)},
              {DNNL_ARG_DST, c.y->out(y)},
              {DNNL_ARG_SCRATCHPAD, c.scratch.for_primitive(c.engine, c.forward_scratch)}};
    if (shape.bias) {
        c.b.set_data_handle(const_cast<float*>(b));  // read only
        args.emplace(DNNL_ARG_BIAS, c.b);
    }
    c.forward.execute(c.stream, args);
    c.y->finish(c.stream, c.scratch);
    c.stream.wait();
}

// The gradients of gy (N, out, OH, OW) asked for (null: not wanted), overwritten: dx through w,
// dw and, when shape.bias, db at x (dw and db wanted together). gy is reordered once where both
// backward primitives read it in the same layout.
void onednn_convolution_backward(const ConvolutionShape& shape, const float* x, const float* w, const float* gy,
                                 float* dx, float* dw, float* db) {
    const auto [held, locked] = convolution(shape);
    Convolution& c = *held;
    memory gy_for_data;
    if (dx) {
        gy_for_data = c.gy_data->in(c.stream, c.scratch, gy);
        c.backward_data.execute(c.stream, {{DNNL_ARG_DIFF_DST, gy_for_data},
                                           {DNNL_ARG_WEIGHTS, c.w_data->in(c.stream, c.scratch, w)},
                                           {DNNL_ARG_DIFF_SRC, c.dx->out(dx)},
                                           {DNNL_ARG_SCRATCHPAD, c.scratch.for_primitive(c.engine, c.data_scratch)}});
        c.dx->finish(c.stream, c.scratch);
    }
    if (dw) {
        const bool reordered = dx && c.gy_layouts_agree;
        Args args{{DNNL_ARG_SRC, c.x_weights->in(c.stream, c.scratch, x)},
                  {DNNL_ARG_DIFF_DST, reordered ? gy_for_data : c.gy_weights->in(c.stream, c.scratch, gy)},
                  {DNNL_ARG_DIFF_WEIGHTS, c.dw->out(dw)},
                  {DNNL_ARG_SCRATCHPAD, c.scratch.for_primitive(c.engine, c.weights_scratch)}};
        if (shape.bias) {
            c.db.set_data_handle(db);
            args.emplace(DNNL_ARG_DIFF_BIAS, c.db);
        }
        c.backward_weights.execute(c.stream, args);
        c.dw->finish(c.stream, c.scratch);
    }
    c.stream.wait();
}

}  // namespace

Var<float> onednn_conv2d(const Var<float>& x, const Var<float>& weight, const Var<float>* bias, const WindowGeometry& g,
                         std::size_t out_channels) {
    const ConvolutionShape shape{g, out_channels, bias != nullptr};
    xt::xarray<float> y = xt::xarray<float>::from_shape({g.n, out_channels, g.oh, g.ow});
    onednn_convolution_forward(shape, x.value().data(), weight.value().data(), bias ? bias->value().data() : nullptr,
                               y.data());
    std::vector<Var<float>::NodePtr> inputs{x.node(), weight.node()};
    if (bias) inputs.push_back(bias->node());
    return Var<float>::from_op(std::move(y), "conv2d", inputs, [inputs, shape](const Node<float>&, const xt::xarray<float>& gy) {
        const Var<float>::NodePtr bias_node = inputs.size() > 2 ? inputs[2] : nullptr;
        const bool weights_wanted = inputs[1]->requires_grad || (bias_node && bias_node->requires_grad);
        GradWrite<float> dx(inputs[0]), dw(inputs[1]), db(bias_node);
        // oneDNN computes the weight's and the bias's gradients together; one not wanted goes to a scratch.
        std::vector<float> unwanted(weights_wanted && !dw.data() ? inputs[1]->value.size() : 0);
        std::vector<float> unwanted_bias(weights_wanted && bias_node && !db.data() ? shape.out_channels : 0);
        onednn_convolution_backward(shape, inputs[0]->value.data(), inputs[1]->value.data(), gy.data(), dx.data(),
                                    weights_wanted ? (dw.data() ? dw.data() : unwanted.data()) : nullptr,
                                    db.data() ? db.data() : unwanted_bias.data());
        dx.commit();
        dw.commit();
        db.commit();
    });
}

}  // namespace xgrad
