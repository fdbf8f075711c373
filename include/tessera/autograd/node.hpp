// Node: one recorded op in the graph (its backward closure and the edges to its inputs), and record() to make one.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/autograd/grad_mode.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::autograd {

template <class T>
using Grads = std::vector<Tensor<T>>;

// needs[i] tells a backward closure whether input i wants a gradient; it may leave grads[i] undefined otherwise.
using NeedsGrad = std::vector<bool>;

template <class T>
using BackwardFn = std::function<Grads<T>(const Tensor<T>& grad_output, const NeedsGrad& needs)>;

// Where the gradient for one input goes: into a leaf's .grad, or on to the node that made the input.
template <class T>
struct Edge {
  std::shared_ptr<tessera::detail::TensorImpl<T>> leaf;  // set when the input is a leaf that requires grad
  std::shared_ptr<Node<T>> node;                         // set when the input was made by an op
  Shape shape;
  bool needs_grad() const { return leaf != nullptr || node != nullptr; }
};

template <class T>
struct Node {
  std::string op;
  std::vector<Edge<T>> edges;  // one per input, in the op's argument order
  BackwardFn<T> backward;
  bool released = false;

  void release() {
    backward = nullptr;
    edges.clear();
    released = true;
  }
};

// Records `backward` as the way to differentiate `output` with respect to `inputs`, when grad mode is on and
// some input requires grad. The closure must capture outputs only through detach(): capturing the output
// handle itself would make a cycle through its grad_fn.
template <class T>
void record(Tensor<T>& output, const char* op, const std::vector<Tensor<T>>& inputs, BackwardFn<T> backward) {
  if (!grad_mode_enabled()) return;
  bool any = false;
  for (const auto& input : inputs) any = any || (input.defined() && input.requires_grad());
  if (!any) return;

  auto node = std::make_shared<Node<T>>();
  node->op = op;
  node->backward = std::move(backward);
  node->edges.reserve(inputs.size());
  for (const auto& input : inputs) {
    Edge<T> edge;
    if (input.defined() && input.requires_grad()) {
      edge.shape = input.shape();
      if (input.is_leaf())
        edge.leaf = input.impl();
      else
        edge.node = input.grad_fn();
    }
    node->edges.push_back(std::move(edge));
  }
  output.impl()->grad_fn = std::move(node);
  output.impl()->requires_grad = true;
}

}  // namespace tessera::autograd
