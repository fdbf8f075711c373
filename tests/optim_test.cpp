// Tests of optim/: AdamW against hand-computed and PyTorch steps, parameter groups, frozen parameters, state
// export/import, gradient clipping, and the learning-rate schedules.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/kernels/adamw.hpp>
#include <tessera/kernels/reference/adamw.hpp>
#include <tessera/optim/optim.hpp>

using tessera::Error;
using tessera::Shape;
using tessera::Tensor;
namespace optim = tessera::optim;

namespace {

template <class T>
Tensor<T> parameter(const std::vector<T>& values, const Shape& shape) {
  Tensor<T> p = Tensor<T>::from_vector(values, shape);
  p.set_requires_grad();
  return p;
}

template <class T>
void set_grad(const Tensor<T>& p, const std::vector<T>& values) {
  p.set_grad(Tensor<T>::from_vector(values, p.shape()));
}

// The gradients of the PyTorch reference run: sin(0.7 i + 1.3 k) for w, cos(0.5 i - k) for b, at step k = 1, 2, 3.
template <class T>
std::vector<T> w_grad(int k) {
  std::vector<T> g;
  for (int i = 0; i < 6; ++i) g.push_back(static_cast<T>(std::sin(0.7 * i + 1.3 * k)));
  return g;
}
template <class T>
std::vector<T> b_grad(int k) {
  std::vector<T> g;
  for (int i = 0; i < 3; ++i) g.push_back(static_cast<T>(std::cos(0.5 * i - k)));
  return g;
}

template <class T>
void check_close(const Tensor<T>& actual, const std::vector<double>& expected, double tolerance) {
  REQUIRE(actual.numel() == static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("element " << i);
    CHECK(std::abs(static_cast<double>(actual.data()[i]) - expected[i]) <= tolerance * std::max(1.0, std::abs(expected[i])));
  }
}

}  // namespace

TEST_CASE("AdamW: one step by hand") {
  // p = 1, g = 0.5, lr 0.1, wd 0.1, betas (0.9, 0.999), eps 1e-8:
  // p ← 1·(1 - 0.01) = 0.99; m = 0.05; v = 0.00025; step size 0.1/(1-0.9) = 1;
  // denom = sqrt(0.00025)/sqrt(0.001) + 1e-8 = 0.5 + 1e-8; p ← 0.99 - 0.05/(0.5 + 1e-8) = 0.890000002.
  Tensor<double> p = parameter<double>({1.0}, Shape{1});
  optim::AdamW<double> opt({{"p", p}}, {0.1, 0.9, 0.999, 1e-8, 0.1});
  set_grad(p, {0.5});
  opt.step();
  CHECK(p.item() == doctest::Approx(0.890000002).epsilon(1e-15));
  REQUIRE(opt.state("p") != nullptr);
  CHECK(opt.state("p")->step == 1);
  CHECK(opt.state("p")->exp_avg.item() == doctest::Approx(0.05).epsilon(1e-15));
  CHECK(opt.state("p")->exp_avg_sq.item() == doctest::Approx(0.00025).epsilon(1e-15));

  // Second step with g = -0.5: m = 0.9·0.05 - 0.05 = -0.005, v = 0.999·0.00025 + 0.00025 = 0.00049975,
  // bias corrections 0.19 and 0.001999; p ← 0.890000002·0.99 - (0.1/0.19)·(-0.005)/(sqrt(0.00049975/0.001999) + 1e-8).
  set_grad(p, {-0.5});
  opt.step();
  const double expected = 0.890000002 * 0.99 + (0.1 / 0.19) * 0.005 / (std::sqrt(0.00049975 / 0.001999) + 1e-8);
  CHECK(p.item() == doctest::Approx(expected).epsilon(1e-14));
}

TEST_CASE("AdamW: three steps match torch.optim.AdamW in double, two groups") {
  // Numbers from torch 2.15 (/opt/pyref), float64, with the script:
  //   w = [[0.5,-1,2],[0.25,0,-0.75]], b = [0.1,-0.2,0.3]; AdamW([{w, wd 0.1}, {b, wd 0}], lr 0.01, betas (0.9,0.99),
  //   eps 1e-8); three steps with grads sin(0.7 i + 1.3 k) and cos(0.5 i - k).
  Tensor<double> w = parameter<double>({0.5, -1.0, 2.0, 0.25, 0.0, -0.75}, Shape{2, 3});
  Tensor<double> b = parameter<double>({0.1, -0.2, 0.3}, Shape{3});
  std::vector<optim::ParamGroup<double>> groups(2);
  groups[0].params = {{"w", w}};
  groups[0].weight_decay = 0.1;
  groups[1].params = {{"b", b}};
  groups[1].weight_decay = 0.0;
  optim::AdamW<double> opt(groups, {0.01, 0.9, 0.99, 1e-8, 0.5});
  for (int k = 1; k <= 3; ++k) {
    set_grad(w, w_grad<double>(k));
    set_grad(b, b_grad<double>(k));
    opt.step();
  }
  check_close(w,
              {0.47634062679293437, -1.0104381717076718, 1.9933942391710187, 0.27635913836901393, 0.025056121045225695,
               -0.72949229190989806},
              1e-14);
  check_close(b, {0.094150173813044441, -0.21715029014024184, 0.2758946235587818}, 1e-14);
  check_close(opt.state("w")->exp_avg,
              {0.055666720564326998, -0.039913121263358574, -0.11672119850116337, -0.13863347226483494,
               -0.095344257814596226, -0.0072131491190290274},
              1e-14);
  check_close(opt.state("w")->exp_avg_sq,
              {0.016460748710134431, 0.018224247340868246, 0.014387103682654908, 0.011319228362952499,
               0.014113496015437859, 0.018131238713923283},
              1e-14);
  CHECK(opt.steps_taken() == 3);
}

TEST_CASE("AdamW: three steps match torch.optim.AdamW in float") {
  // torch 2.15, float32: AdamW([w], lr 1e-3, betas (0.9,0.999), eps 1e-8, weight_decay 0.05), grads sin(0.7 i + 1.3 k).
  Tensor<float> w = parameter<float>({0.5f, -1.0f, 2.0f, 0.25f, 0.0f, -0.75f}, Shape{2, 3});
  optim::AdamW<float> opt({{"w", w}}, {1e-3, 0.9, 0.999, 1e-8, 0.05});
  for (int k = 1; k <= 3; ++k) {
    set_grad(w, w_grad<float>(k));
    opt.step();
  }
  check_close(w, {0.497707635, -1.00119472, 1.99963832, 0.252677858, 0.00250751176, -0.748060584}, 3e-7);
}

TEST_CASE("AdamW: three steps match torch.optim.AdamW in double with beta1 below 0.5 (lerp from the gradient's side)") {
  // torch 2.15, float64: AdamW([w], lr 0.01, betas (0.3, 0.99), eps 1e-8, weight_decay 0.1, foreach=False), grads
  // sin(0.7 i + 1.3 k). With weight 1 - beta1 >= 0.5 torch's lerp computes m = g - (g - m)·beta1.
  Tensor<double> w = parameter<double>({0.5, -1.0, 2.0, 0.25, 0.0, -0.75}, Shape{2, 3});
  optim::AdamW<double> opt({{"w", w}}, {0.01, 0.3, 0.99, 1e-8, 0.1});
  for (int k = 1; k <= 3; ++k) {
    set_grad(w, w_grad<double>(k));
    opt.step();
  }
  check_close(w,
              {0.48482279716805954, -0.9995315857682646, 2.002427866218986, 0.2775624580270699, 0.018776394151056145,
               -0.7395444735094621},
              1e-14);
  check_close(opt.state("w")->exp_avg,
              {-0.31247685766499117, -0.6714245604234893, -0.7145908011166642, -0.4216738222553996,
               0.06956294404780361, 0.5280831708143406},
              1e-14);
}

// The optimizer has no update formula of its own: its step is kernels::adamw_step for float and
// kernels::reference::adamw_step for double, bit for bit.
TEST_CASE_TEMPLATE("AdamW: a step is the AdamW kernel's step, bit for bit", T, float, double) {
  const int64_t n = 37;
  std::vector<T> start(n);
  for (int64_t i = 0; i < n; ++i) start[i] = static_cast<T>(std::cos(0.9 * double(i)));
  for (double beta1 : {0.9, 0.3}) {
    CAPTURE(beta1);
    Tensor<T> p = parameter<T>(start, Shape{n});
    optim::AdamW<T> opt({{"p", p}}, {1e-2, beta1, 0.99, 1e-8, 0.1});
    std::vector<T> param = start, m(n, T(0)), v(n, T(0));
    for (int k = 1; k <= 3; ++k) {
      std::vector<T> grad(n);
      for (int64_t i = 0; i < n; ++i) grad[i] = static_cast<T>(std::sin(0.7 * double(i) + 1.3 * k));
      set_grad(p, grad);
      opt.step();
      if constexpr (std::is_same_v<T, float>)
        tessera::kernels::adamw_step(param.data(), grad.data(), m.data(), v.data(), n, 1e-2, beta1, 0.99, 1e-8, 0.1, k);
      else
        tessera::kernels::reference::adamw_step(param.data(), grad.data(), m.data(), v.data(), n, 1e-2, beta1, 0.99,
                                                1e-8, 0.1, k);
    }
    for (int64_t i = 0; i < n; ++i) {
      CAPTURE(i);
      CHECK(std::memcmp(&p.data()[i], &param[i], sizeof(T)) == 0);
      CHECK(std::memcmp(&opt.state("p")->exp_avg.data()[i], &m[i], sizeof(T)) == 0);
      CHECK(std::memcmp(&opt.state("p")->exp_avg_sq.data()[i], &v[i], sizeof(T)) == 0);
    }
  }
}

TEST_CASE("AdamW: frozen parameters and parameters without a gradient are skipped") {
  Tensor<double> a = parameter<double>({1.0, 2.0}, Shape{2});
  Tensor<double> frozen = parameter<double>({3.0}, Shape{1});
  Tensor<double> untouched = parameter<double>({4.0}, Shape{1});
  optim::AdamW<double> opt({{"a", a}, {"frozen", frozen}, {"untouched", untouched}}, {0.1, 0.9, 0.999, 1e-8, 0.1});
  set_grad(a, {1.0, -1.0});
  set_grad(frozen, {1.0});
  frozen.set_requires_grad(false);
  opt.step();
  CHECK(a.data()[0] != 1.0);
  CHECK(frozen.item() == 3.0);
  CHECK(untouched.item() == 4.0);
  CHECK(opt.state("frozen") == nullptr);
  CHECK(opt.state("untouched") == nullptr);

  opt.zero_grad(false);
  REQUIRE(a.grad().defined());
  CHECK(a.grad().data()[0] == 0.0);
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("AdamW: rejects duplicate names, shared tensors and bad hyper-parameters") {
  Tensor<double> a = parameter<double>({1.0}, Shape{1});
  Tensor<double> b = parameter<double>({1.0}, Shape{1});
  CHECK_THROWS_AS(optim::AdamW<double>({{"a", a}, {"a", b}}), Error);
  CHECK_THROWS_AS(optim::AdamW<double>({{"a", a}, {"b", a}}), Error);
  CHECK_THROWS_AS(optim::AdamW<double>({{"a", a}}, {-1.0, 0.9, 0.999, 1e-8, 0.0}), Error);
  CHECK_THROWS_AS(optim::AdamW<double>({{"a", a}}, {1e-3, 1.0, 0.999, 1e-8, 0.0}), Error);
}

TEST_CASE("param_groups_weight_decay: decay only on rank >= 2 weights outside the exclusions") {
  optim::NamedParameters<float> params = {
      {"cls_token", Tensor<float>::zeros(Shape{1, 1, 4})}, {"pos_embed", Tensor<float>::zeros(Shape{1, 5, 4})},
      {"patch_embed.proj.weight", Tensor<float>::zeros(Shape{4, 3, 2, 2})},
      {"patch_embed.proj.bias", Tensor<float>::zeros(Shape{4})}, {"blocks.0.norm1.weight", Tensor<float>::zeros(Shape{4})},
      {"head.weight", Tensor<float>::zeros(Shape{2, 4})}};
  auto groups = optim::param_groups_weight_decay(params, 0.05);
  REQUIRE(groups.size() == 2);
  CHECK(*groups[0].weight_decay == 0.05);
  CHECK(*groups[1].weight_decay == 0.0);
  std::vector<std::string> decay, plain;
  for (auto& [n, p] : groups[0].params) decay.push_back(n);
  for (auto& [n, p] : groups[1].params) plain.push_back(n);
  CHECK(decay == std::vector<std::string>{"patch_embed.proj.weight", "head.weight"});
  CHECK(plain == std::vector<std::string>{"cls_token", "pos_embed", "patch_embed.proj.bias", "blocks.0.norm1.weight"});

  auto all = optim::single_group(params, 0.05);
  REQUIRE(all.size() == 1);
  CHECK(all[0].params.size() == params.size());
}

TEST_CASE("AdamW: state export and import continue a run exactly") {
  auto make = [] {
    return std::vector<Tensor<double>>{parameter<double>({0.5, -1.0, 2.0, 0.25, 0.0, -0.75}, Shape{2, 3}),
                                       parameter<double>({0.1, -0.2, 0.3}, Shape{3})};
  };
  auto named = [](const std::vector<Tensor<double>>& p) { return optim::NamedParameters<double>{{"w", p[0]}, {"b", p[1]}}; };
  const optim::AdamWOptions options{0.01, 0.9, 0.99, 1e-8, 0.1};
  auto run_step = [](optim::AdamW<double>& opt, const std::vector<Tensor<double>>& p, int k) {
    set_grad(p[0], w_grad<double>(k));
    set_grad(p[1], b_grad<double>(k));
    opt.step();
  };

  auto first = make();
  optim::AdamW<double> uninterrupted(named(first), options);
  for (int k = 1; k <= 3; ++k) run_step(uninterrupted, first, k);

  auto second = make();
  optim::AdamW<double> before(named(second), options);
  for (int k = 1; k <= 2; ++k) run_step(before, second, k);
  const auto state = before.state_dict();
  CHECK(state.names() == std::vector<std::string>{"exp_avg.w", "exp_avg_sq.w", "step.w", "exp_avg.b", "exp_avg_sq.b", "step.b"});
  CHECK(state.at("step.w").item() == 2.0);

  optim::AdamW<double> resumed(named(second), options);
  resumed.load_state_dict(state);
  run_step(resumed, second, 3);
  for (int i = 0; i < 2; ++i)
    for (int64_t j = 0; j < first[static_cast<size_t>(i)].numel(); ++j)
      CHECK(second[static_cast<size_t>(i)].data()[j] == first[static_cast<size_t>(i)].data()[j]);

  tessera::nn::StateDict<double> bad = state;
  bad.insert("exp_avg.nope", Tensor<double>::zeros(Shape{1}));
  CHECK_THROWS_AS(resumed.load_state_dict(bad), Error);
  tessera::nn::StateDict<double> wrong_shape = state;
  wrong_shape.insert("exp_avg.w", Tensor<double>::zeros(Shape{6}));
  CHECK_THROWS_AS(resumed.load_state_dict(wrong_shape), Error);
  tessera::nn::StateDict<double> incomplete;
  incomplete.insert("exp_avg.w", state.at("exp_avg.w"));
  CHECK_THROWS_AS(resumed.load_state_dict(incomplete), Error);
}

TEST_CASE("clip_grad_norm_: total norm and scaled gradients match torch") {
  // torch.nn.utils.clip_grad_norm_([p1, p2], 2.0) with grads [3,-4,1] and [[2,0.5],[-1,6]] (torch 2.15):
  // total 8.20061016 (in float; sqrt(67.25) exactly), grads scaled by 2 / (total + 1e-6).
  auto make = [] {
    Tensor<float> p1 = Tensor<float>::zeros(Shape{3}), p2 = Tensor<float>::zeros(Shape{2, 2});
    p1.set_grad(Tensor<float>::from_vector({3.0f, -4.0f, 1.0f}, Shape{3}));
    p2.set_grad(Tensor<float>::from_vector({2.0f, 0.5f, -1.0f, 6.0f}, Shape{2, 2}));
    return std::vector<Tensor<float>>{p1, p2, Tensor<float>::zeros(Shape{2})};  // the last has no grad
  };
  auto params = make();
  const double total = optim::clip_grad_norm_(params, 2.0);
  CHECK(total == doctest::Approx(std::sqrt(67.25)).epsilon(1e-15));
  CHECK(total == doctest::Approx(8.20061016).epsilon(1e-7));
  check_close(params[0].grad(), {0.7316527962684631, -0.9755370616912842, 0.24388426542282104}, 1e-7);
  check_close(params[1].grad(), {0.4877685308456421, 0.12194213271141052, -0.24388426542282104, 1.4633055925369263}, 1e-7);

  params = make();
  CHECK(optim::clip_grad_norm_(params, 100.0, std::numeric_limits<double>::infinity()) == 6.0);
  CHECK(params[1].grad().data()[3] == 6.0f);  // below max_norm: unchanged
  params = make();
  CHECK(optim::clip_grad_norm_(params, 100.0, 1.0) == doctest::Approx(17.5));

  params = make();
  params[0].grad().data()[0] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(optim::clip_grad_norm_(params, 1.0, 2.0, true), Error);
  CHECK(params[1].grad().data()[0] == 2.0f);  // nothing changed before the throw

  params = make();
  optim::clip_grad_value_(params, 2.5);
  check_close(params[0].grad(), {2.5, -2.5, 1.0}, 0.0);
}

TEST_CASE("CosineSchedule: warmup then cosine, the reference recipe's formula") {
  // 10 epochs of 390 steps, warmup 1 epoch, base 1e-3, min 1e-5.
  const optim::CosineSchedule schedule(1e-3, 3900, 390, 1e-5);
  CHECK(schedule.lr_at(0) == doctest::Approx(1e-3 / 390).epsilon(1e-14));
  CHECK(schedule.lr_at(194) == doctest::Approx(1e-3 * 195 / 390).epsilon(1e-14));
  CHECK(schedule.lr_at(389) == doctest::Approx(1e-3).epsilon(1e-14));
  CHECK(schedule.lr_at(390) == doctest::Approx(1e-3).epsilon(1e-14));
  CHECK(schedule.lr_at(390 + 1755) == doctest::Approx(1e-5 + (1e-3 - 1e-5) * 0.5).epsilon(1e-14));  // halfway
  // A quarter of the way: cos(π/4) = sqrt(2)/2.
  CHECK(schedule.lr_at(390 + 877) ==
        doctest::Approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + std::cos(3.14159265358979323846 * 877 / 3510))).epsilon(1e-14));
  CHECK(schedule.lr_at(3900) == doctest::Approx(1e-5).epsilon(1e-14));
  CHECK(schedule.lr_at(10000) == doctest::Approx(1e-5).epsilon(1e-14));
  CHECK(schedule.lr_at(3899) > 1e-5);
  CHECK(schedule.lr_at(3899) < 1.01e-5);
  CHECK_THROWS_AS(optim::CosineSchedule(1e-3, 10, 11), Error);
  CHECK_THROWS_AS(schedule.lr_at(-1), Error);

  const optim::CosineSchedule no_warmup(0.1, 100);
  CHECK(no_warmup.lr_at(0) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(no_warmup.lr_at(50) == doctest::Approx(0.05).epsilon(1e-15));
}

TEST_CASE("CosineAnnealingLR: matches torch's scheduler") {
  // torch.optim.lr_scheduler.CosineAnnealingLR(SGD(lr=0.1), T_max=10, eta_min=0.001), lr before each step (torch 2.15).
  const std::vector<double> torch_lrs = {0.10000000000000001, 0.097577297556610113, 0.090546341221559898,
                                         0.079595369988477424, 0.065796341221559904, 0.050500000000000003,
                                         0.03520365877844011, 0.021404630011522589, 0.010453658778440109,
                                         0.0034227024433899004, 0.001, 0.0034227024433899004, 0.01045365877844014};
  const optim::CosineAnnealingLR schedule(0.1, 10, 0.001);
  for (size_t e = 0; e < torch_lrs.size(); ++e) {
    INFO("epoch " << e);
    CHECK(schedule.lr_at(static_cast<int64_t>(e)) == doctest::Approx(torch_lrs[e]).epsilon(1e-13));
  }
}

TEST_CASE("AdamW follows a schedule through set_lr") {
  Tensor<double> p = parameter<double>({1.0}, Shape{1});
  optim::AdamW<double> opt({{"p", p}}, {1.0, 0.9, 0.999, 1e-8, 0.0});
  const optim::CosineSchedule schedule(1e-2, 10, 2);
  opt.set_lr(schedule.lr_at(0));
  CHECK(opt.lr() == doctest::Approx(5e-3));
  set_grad(p, {1.0});
  opt.step();
  // First Adam step moves by lr·m̂/(sqrt(v̂)+eps) = lr·1/(1+1e-8) in the gradient's opposite direction.
  CHECK(p.item() == doctest::Approx(1.0 - 5e-3 / (1.0 + 1e-8)).epsilon(1e-14));
}
