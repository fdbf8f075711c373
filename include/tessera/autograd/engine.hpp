// The backward engine: walks the recorded nodes from a tensor in reverse topological order, accumulating gradients.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tessera/autograd/grad_mode.hpp"
#include "tessera/autograd/node.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::autograd {

// Called by backward() for each leaf that requires grad, as soon as it has added the last gradient it will add to
// that leaf in this call (after the last node with an edge to the leaf, in the engine's order), so the leaf's
// .grad is final for this backward. Leaves that no gradient reached are not reported. Data-parallel training
// starts averaging a bucket of gradients from here while the rest of backward runs (distributed/).
template <class T>
using LeafGradReadyHook = std::function<void(const Tensor<T>& leaf)>;

namespace detail {
template <class T>
inline thread_local const LeafGradReadyHook<T>* leaf_grad_ready_hook = nullptr;
}  // namespace detail

// Installs `hook` for the backward() calls of this thread while the guard lives (restoring the previous one).
template <class T>
class LeafGradReadyGuard {
 public:
  explicit LeafGradReadyGuard(LeafGradReadyHook<T> hook)
      : hook_(std::move(hook)), previous_(detail::leaf_grad_ready_hook<T>) {
    detail::leaf_grad_ready_hook<T> = &hook_;
  }
  ~LeafGradReadyGuard() { detail::leaf_grad_ready_hook<T> = previous_; }
  LeafGradReadyGuard(const LeafGradReadyGuard&) = delete;
  LeafGradReadyGuard& operator=(const LeafGradReadyGuard&) = delete;

 private:
  LeafGradReadyHook<T> hook_;
  const LeafGradReadyHook<T>* previous_;
};

namespace detail {

template <class T>
void add_into(const Tensor<T>& destination, const Tensor<T>& source) {
  T* d = destination.data();
  const T* s = source.data();
  const int64_t n = destination.numel();
#pragma omp parallel for schedule(static) if (n > (int64_t{1} << 15))
  for (int64_t i = 0; i < n; ++i) d[i] += s[i];
}

// Nodes reachable from `root`, each after every node that consumes its output.
template <class T>
std::vector<Node<T>*> topological_order(Node<T>* root) {
  std::vector<Node<T>*> order;
  std::unordered_set<Node<T>*> visited;
  std::vector<std::pair<Node<T>*, size_t>> stack{{root, 0}};
  visited.insert(root);
  while (!stack.empty()) {
    auto& [node, next_edge] = stack.back();
    TESSERA_CHECK(!node->released, "backward: the graph through op '", node->op,
                  "' was already released by an earlier backward(); pass retain_graph = true to the first call "
                  "to back-propagate through it twice");
    if (next_edge < node->edges.size()) {
      Node<T>* child = node->edges[next_edge++].node.get();
      if (child && visited.insert(child).second) stack.push_back({child, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  std::reverse(order.begin(), order.end());
  return order;
}

// True when nothing else refers to this gradient's elements, so it may be kept or updated in place.
template <class T>
bool exclusively_owned(const Tensor<T>& gradient) {
  return gradient.impl().use_count() == 1 && gradient.impl()->storage.use_count() == 1;
}

template <class T>
void accumulate_leaf(tessera::detail::TensorImpl<T>& leaf, Tensor<T>&& gradient) {
  if (!leaf.grad) {
    // Keep the closure's result when it is ours alone; copy it when it may alias another tensor.
    leaf.grad = exclusively_owned(gradient) ? gradient.impl() : gradient.clone().impl();
  } else {
    add_into(Tensor<T>(leaf.grad), gradient);
  }
}

}  // namespace detail

template <class T>
void backward(const Tensor<T>& root, const Tensor<T>& grad_output, bool retain_graph) {
  TESSERA_CHECK(root.requires_grad(), "backward: the tensor of shape ", root.shape(),
                " does not require grad (no input of the ops that made it requires grad)");
  Tensor<T> seed = grad_output;
  if (!seed.defined()) {
    TESSERA_CHECK(root.numel() == 1, "backward: without an explicit gradient the tensor must hold one element, got shape ",
                  root.shape());
    seed = Tensor<T>::ones(root.shape());
  }
  TESSERA_CHECK(seed.shape() == root.shape(), "backward: gradient shape ", seed.shape(),
                " differs from tensor shape ", root.shape());

  const LeafGradReadyHook<T>* hook = detail::leaf_grad_ready_hook<T>;
  if (root.is_leaf()) {
    detail::accumulate_leaf(*root.impl(), std::move(seed));
    if (hook) (*hook)(root);
    return;
  }

  NoGradGuard no_grad;
  const std::vector<Node<T>*> order = detail::topological_order(root.grad_fn().get());
  std::unordered_map<Node<T>*, Tensor<T>> pending{{root.grad_fn().get(), seed}};
  std::vector<std::shared_ptr<Node<T>>> keep_alive;  // released nodes must outlive the walk

  // With a hook: the leaves whose last incoming edge is at position i of the order (kept here, as release()
  // clears the edges), reported once node i is done.
  std::vector<std::vector<std::shared_ptr<tessera::detail::TensorImpl<T>>>> leaves_done_after;
  if (hook) {
    std::unordered_map<tessera::detail::TensorImpl<T>*, size_t> last_use;
    for (size_t i = 0; i < order.size(); ++i)
      for (const auto& edge : order[i]->edges)
        if (edge.leaf) last_use[edge.leaf.get()] = i;
    leaves_done_after.resize(order.size());
    for (size_t i = 0; i < order.size(); ++i)
      for (const auto& edge : order[i]->edges)
        if (edge.leaf && last_use[edge.leaf.get()] == i) {
          leaves_done_after[i].push_back(edge.leaf);
          last_use[edge.leaf.get()] = order.size();  // reported once, even if this node has two edges to it
        }
  }
  std::unordered_set<tessera::detail::TensorImpl<T>*> leaves_reached;
  const auto report_leaves_done_after = [&](size_t i) {
    if (!hook) return;
    for (const auto& leaf : leaves_done_after[i])
      if (leaves_reached.count(leaf.get())) (*hook)(Tensor<T>(leaf));
  };

  for (size_t position = 0; position < order.size(); ++position) {
    Node<T>* node = order[position];
    auto found = pending.find(node);
    if (found == pending.end()) {  // no gradient reached it (every path gave an undefined one)
      report_leaves_done_after(position);
      continue;
    }
    Tensor<T> gradient = std::move(found->second);
    pending.erase(found);

    NeedsGrad needs(node->edges.size());
    for (size_t i = 0; i < node->edges.size(); ++i) needs[i] = node->edges[i].needs_grad();
    Grads<T> grads = node->backward(gradient, needs);
    TESSERA_CHECK(grads.size() == node->edges.size(), "backward of op '", node->op, "' returned ", grads.size(),
                  " gradients for ", node->edges.size(), " inputs");

    for (size_t i = 0; i < node->edges.size(); ++i) {
      Edge<T>& edge = node->edges[i];
      if (!edge.needs_grad() || !grads[i].defined()) continue;
      TESSERA_CHECK(grads[i].shape() == edge.shape, "backward of op '", node->op, "' returned a gradient of shape ",
                    grads[i].shape(), " for input ", i, " of shape ", edge.shape);
      if (edge.leaf) {
        detail::accumulate_leaf(*edge.leaf, std::move(grads[i]));
        if (hook) leaves_reached.insert(edge.leaf.get());
      } else {
        auto [slot, inserted] = pending.try_emplace(edge.node.get(), std::move(grads[i]));
        if (!inserted) {
          if (!detail::exclusively_owned(slot->second))  // it may alias another tensor: sum out of place
            slot->second = slot->second.clone();
          detail::add_into(slot->second, grads[i]);
        }
      }
    }
    if (!retain_graph) {
      for (auto& edge : node->edges)
        if (edge.node) keep_alive.push_back(edge.node);
      node->release();
    }
    report_leaves_done_after(position);
  }
}

}  // namespace tessera::autograd

namespace tessera {

template <class T>
void Tensor<T>::backward(const Tensor<T>& grad_output, bool retain_graph) const {
  autograd::backward(*this, grad_output, retain_graph);
}

}  // namespace tessera
