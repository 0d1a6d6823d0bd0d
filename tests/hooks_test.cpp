// Forward hooks on Module: they run after forward in registration order, with the module's path,
// input, output and the tree's step; a handle's destruction or remove() unregisters its hook, also
// after the module is gone; a hook on a layer nested in Sequentials fires; and hooks record nothing
// into the graph and change no value or gradient.
#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "layers/activations.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/init.hpp"
#include "layers/linear.hpp"
#include "layers/residual.hpp"
#include "layers/sequential.hpp"

namespace {

using xgrad::ForwardHookContext;
using xgrad::HookHandle;
using xgrad::Linear;
using xgrad::Module;
using xgrad::Sequential;
using xgrad::Var;

// fc1, then "block" (a Sequential of sigmoid and fc2), then tanh.
std::shared_ptr<Sequential<float>> nested_model(std::uint64_t seed) {
    xgrad::Rng rng(seed);
    auto block = std::make_shared<Sequential<float>>();
    block->add("sigmoid", std::make_shared<xgrad::Sigmoid<float>>());
    block->add("fc2", std::make_shared<Linear<float>>(5, 3, true, rng));
    auto model = std::make_shared<Sequential<float>>();
    model->add("fc1", std::make_shared<Linear<float>>(4, 5, true, rng));
    model->add("block", block);
    model->add("tanh", std::make_shared<xgrad::Tanh<float>>());
    return model;
}

Var<float> inputs() { return Var<float>(xt::xarray<float>{{0.5f, -1.0f, 2.0f, 0.1f}, {1.5f, 0.3f, -0.7f, -2.0f}}); }

Module<float>& module_at(Module<float>& model, const std::string& path) {
    for (auto& [name, m] : model.named_modules()) {
        if (name == path) return *m;
    }
    throw std::invalid_argument("no module " + path);
}

TEST(ForwardHooks, NamedModulesListsEveryDepthParentsFirst) {
    auto model = nested_model(0);
    std::vector<std::string> paths;
    for (const auto& [name, m] : model->named_modules()) {
        paths.push_back(name);
        EXPECT_EQ(m->path(), name);
    }
    EXPECT_EQ(paths, (std::vector<std::string>{"fc1", "block", "block.sigmoid", "block.fc2", "tanh"}));
}

TEST(ForwardHooks, RunAfterForwardInRegistrationOrderWithPathInputAndOutput) {
    auto model = nested_model(0);
    auto& fc2 = module_at(*model, "block.fc2");
    std::vector<std::string> calls;
    xt::xarray<float> seen_input, seen_output;
    HookHandle first = fc2.register_forward_hook([&](const ForwardHookContext<float>& c) {
        calls.push_back("first " + c.path);
        seen_input = c.input.value();
        seen_output = c.output.value();
    });
    HookHandle second = fc2.register_forward_hook([&](const ForwardHookContext<float>& c) { calls.push_back("second " + c.path); });
    (void)(*model)(inputs());
    EXPECT_EQ(calls, (std::vector<std::string>{"first block.fc2", "second block.fc2"}));

    // What the hook saw is what the layers compute when called one by one.
    xgrad::NoGrad no_grad;
    const Var<float> hidden = module_at(*model, "block.sigmoid").forward(module_at(*model, "fc1").forward(inputs()));
    EXPECT_EQ(seen_input, hidden.value());
    EXPECT_EQ(seen_output, fc2.forward(hidden).value());
}

TEST(ForwardHooks, FireInExecutionOrderAcrossNestedModules) {
    auto model = nested_model(0);
    std::vector<std::string> order;
    std::vector<HookHandle> handles;
    for (auto& [name, m] : model->named_modules()) {
        handles.push_back(m->register_forward_hook([&](const ForwardHookContext<float>& c) { order.push_back(c.path); }));
    }
    handles.push_back(model->register_forward_hook([&](const ForwardHookContext<float>& c) { order.push_back("root" + c.path); }));
    (void)(*model)(inputs());
    // A container's hook runs once its children's forwards, and their hooks, are done.
    EXPECT_EQ(order, (std::vector<std::string>{"fc1", "block.sigmoid", "block.fc2", "block", "tanh", "root"}));
}

// A Residual calls its body through its hooks too: x + body(x), the body's hook before the block's.
TEST(ForwardHooks, FireInsideAResidualBody) {
    xgrad::Rng rng(0);
    auto body = std::make_shared<Sequential<float>>();
    body->add("fc", std::make_shared<Linear<float>>(4, 4, true, rng));
    auto model = std::make_shared<Sequential<float>>();
    model->add("block", std::make_shared<xgrad::Residual<float>>(body));
    std::vector<std::string> order;
    std::vector<HookHandle> handles;
    for (auto& [name, m] : model->named_modules()) {
        handles.push_back(m->register_forward_hook([&](const ForwardHookContext<float>& c) { order.push_back(c.path); }));
    }
    (void)(*model)(inputs());
    EXPECT_EQ(order, (std::vector<std::string>{"block.body.fc", "block.body", "block"}));
}

TEST(ForwardHooks, AHandleUnregistersOnDestructionOrRemove) {
    auto model = nested_model(0);
    auto& fc1 = module_at(*model, "fc1");
    int a = 0, b = 0;
    HookHandle removed = fc1.register_forward_hook([&](const ForwardHookContext<float>&) { ++a; });
    {
        HookHandle scoped = fc1.register_forward_hook([&](const ForwardHookContext<float>&) { ++b; });
        (void)(*model)(inputs());
    }
    (void)(*model)(inputs());
    EXPECT_EQ(a, 2);
    EXPECT_EQ(b, 1);
    removed.remove();
    removed.remove();  // a second remove does nothing
    (void)(*model)(inputs());
    EXPECT_EQ(a, 2);

    // Moved, the hook belongs to the new handle.
    HookHandle moved;
    {
        HookHandle original = fc1.register_forward_hook([&](const ForwardHookContext<float>&) { ++a; });
        moved = std::move(original);
    }
    (void)(*model)(inputs());
    EXPECT_EQ(a, 3);
}

TEST(ForwardHooks, AHandleOutlivingItsModuleRemovesNothing) {
    HookHandle handle;
    {
        auto model = nested_model(0);
        handle = model->register_forward_hook([](const ForwardHookContext<float>&) {});
    }
    handle.remove();  // the module is gone: no access to it (ASan checks)
    SUCCEED();
}

// A hook's own state (a mutable lambda's captures) lasts from one forward to the next.
TEST(ForwardHooks, AStatefulHookKeepsItsState) {
    auto model = nested_model(0);
    std::size_t seen = 0;
    HookHandle handle = model->register_forward_hook([calls = std::size_t{0}, &seen](const ForwardHookContext<float>&) mutable {
        seen = ++calls;
    });
    for (int i = 0; i < 3; ++i) (void)(*model)(inputs());
    EXPECT_EQ(seen, 3u);
}

TEST(ForwardHooks, AHookRemovingItselfRunsThisTimeAndNeverAgain) {
    auto model = nested_model(0);
    int calls = 0;
    HookHandle handle;
    handle = model->register_forward_hook([&](const ForwardHookContext<float>&) {
        ++calls;
        handle.remove();
    });
    (void)(*model)(inputs());
    (void)(*model)(inputs());
    EXPECT_EQ(calls, 1);
}

TEST(ForwardHooks, ReceiveTheStepSetOnTheRoot) {
    auto model = nested_model(0);
    std::vector<std::size_t> steps;
    HookHandle h = module_at(*model, "block.fc2").register_forward_hook([&](const ForwardHookContext<float>& c) {
        steps.push_back(c.step);
    });
    (void)(*model)(inputs());
    model->set_step(7);
    (void)(*model)(inputs());
    model->set_step(8);
    (void)(*model)(inputs());
    EXPECT_EQ(steps, (std::vector<std::size_t>{0, 7, 8}));
}

// A hook that computes with the Vars (as a probe may) adds no node to the graph, and the loss and
// every gradient are the bits of the same model without hooks.
TEST(ForwardHooks, RecordNothingInTheGraphAndChangeNoValueOrGradient) {
    const xt::xarray<std::int64_t> labels{2, 0};
    const auto loss_of = [&](Sequential<float>& model) { return xgrad::cross_entropy(model(inputs()), labels); };

    auto plain = nested_model(3);
    const Var<float> plain_loss = loss_of(*plain);
    const std::size_t plain_nodes = xgrad::graph_size(plain_loss);
    plain_loss.backward();

    auto hooked = nested_model(3);
    std::vector<HookHandle> handles;
    double total = 0;
    for (auto& [name, m] : hooked->named_modules()) {
        handles.push_back(m->register_forward_hook([&](const ForwardHookContext<float>& c) {
            EXPECT_FALSE(xgrad::grad_enabled());
            // Each would be a node with grad on.
            total += xgrad::mean(square(c.output)).value()() + xgrad::mean(c.input * 2.0f).value()();
        }));
    }
    const Var<float> hooked_loss = loss_of(*hooked);
    EXPECT_TRUE(xgrad::grad_enabled());
    EXPECT_EQ(xgrad::graph_size(hooked_loss), plain_nodes);
    EXPECT_GT(total, 0.0);
    EXPECT_EQ(hooked_loss.value(), plain_loss.value());
    hooked_loss.backward();
    const auto a = plain->named_parameters(), b = hooked->named_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].second.grad(), b[i].second.grad()) << a[i].first;
}

}  // namespace
