// How compnet's fused ops (batch_norm_act.h, inverted_middle.h, inverted_branch.h) meet libtorch's
// autograd by name rather than by position.
//
// Inputs: a fused op takes one argument struct from generated/op_structs.h (declared in
// native/ops.json). `applyNamed<Fn>(args)` hands autograd `args.tensors()` as the function's
// inputs and the struct itself beside them, so forward reads its operands by field name, and
// backward returns `gradientsFor<Args>()` filled at the struct's generated positions (Args::kX,
// Args::kBn1Weight, ...), which are also what needs_input_grad takes.
//
// Saved variables: a struct of tensors with `each(f)`, which visits every field; `save(ctx, s)`
// stores them with save_for_backward (so autograd checks at backward that none was changed in
// place since) and `load<S>(ctx)` reads them back into the same fields.
#pragma once

#include <torch/torch.h>

#include <utility>

namespace compnet {

// Runs the autograd function Fn, whose forward is forward(ctx, at::TensorList tensors, const Args&),
// over the struct's tensors (autograd's inputs, in Args::TensorIndex order) and the struct.
template <typename Fn, typename Args>
at::Tensor applyNamed(const Args& args) {
  const auto tensors = args.tensors();
  return Fn::apply(at::TensorList(tensors), args);
}

// The gradients backward returns for applyNamed's inputs, all undefined: one per tensor of Args,
// then one for the struct itself (never a gradient).
template <typename Args>
torch::autograd::variable_list gradientsFor() {
  return torch::autograd::variable_list(Args::kTensorCount + 1);
}

template <typename S>
void save(torch::autograd::AutogradContext* ctx, S saved) {
  torch::autograd::variable_list list;
  saved.each([&](at::Tensor& t) { list.push_back(t); });
  TORCH_CHECK(list.size() * sizeof(at::Tensor) == sizeof(S), "saved-variable struct: each() must visit every field");
  ctx->save_for_backward(list);
}

template <typename S>
S load(torch::autograd::AutogradContext* ctx) {
  auto list = ctx->get_saved_variables();
  S saved;
  size_t k = 0;
  saved.each([&](at::Tensor& t) { t = std::move(list.at(k++)); });
  return saved;
}

}  // namespace compnet
