// compnet's native layer: a thin N-API binding to libtorch.
//
// Every op is declared once, in native/ops.json (name, typed arguments, result, and the C++
// expression that is the op). scripts/gen-native-ops.mjs generates from it the argument unpacking
// and export list (generated/op_binding.h) and the TypeScript interface (src/torch/
// native.generated.ts). This file holds only the ops too long for one expression, as
// compnet::binding::<op>, called by the generated code with the table's argument types; the
// tables, readers, writers and the error guard are in binding.h.
#include "binding.h"

#include <torch/version.h>

#include "batch_norm_act.h"
#include "distributed.h"
#include "generated/op_structs.h"
#include "inverted_branch.h"
#include "inverted_middle.h"

#include <cstring>
#include <sstream>

namespace compnet::binding {

// ---- library facts and global settings -----------------------------------------------------------

bool setGradEnabled(bool on) {
  const bool prev = at::GradMode::is_enabled();
  at::GradMode::set_enabled(on);
  return prev;
}

// ---- handles and data in/out ----------------------------------------------------------------------

at::Tensor fromArray(Napi::TypedArray data, const std::vector<int64_t>& shape, at::ScalarType dtype) {
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
  if (data.ByteLength() != bytes)
    throw std::invalid_argument("data has " + std::to_string(data.ByteLength()) + " bytes but shape x dtype needs " + std::to_string(bytes));
  auto* ptr = static_cast<uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset();
  return torch::from_blob(ptr, shape, torch::TensorOptions().dtype(dtype)).clone();
}

// Copying out always goes through a contiguous CPU copy (views may be strided).
Napi::Value toArray(const Napi::Env& env, const at::Tensor& tensor) {
  auto t = tensor.detach().to(at::kCPU).contiguous();
  const size_t bytes = t.numel() * t.element_size();
  auto buf = Napi::ArrayBuffer::New(env, bytes);
  if (bytes) std::memcpy(buf.Data(), t.data_ptr(), bytes);
  const size_t n = static_cast<size_t>(t.numel());
  switch (t.scalar_type()) {
    case at::kFloat: return Napi::Float32Array::New(env, n, buf, 0);
    case at::kDouble: return Napi::Float64Array::New(env, n, buf, 0);
    case at::kLong: return Napi::BigInt64Array::New(env, n, buf, 0);
    case at::kInt: return Napi::Int32Array::New(env, n, buf, 0);
    case at::kByte: case at::kBool: return Napi::Uint8Array::New(env, n, buf, 0);
    default: throw std::invalid_argument("cannot copy out dtype " + std::string(c10::toString(t.scalar_type())));
  }
}

// ---- autograd ---------------------------------------------------------------------------------------

double versionSum(const std::vector<at::Tensor>& ts) {
  double sum = 0;
  for (const auto& t : ts) sum += static_cast<double>(t._version());
  return sum;
}

// ---- frozen TorchScript plans (inference) -------------------------------------------------------
// Callers must check a plan's outputs: on libtorch 1.13.1 with oneDNN 2.6.3, the frozen graph's
// clamp (prim::MKLDNNHardTanh_) is a no-op when a conv's output channels are not a multiple of 16
// (measured; BENCHMARKS.md).

torch::jit::Module jitFreeze(const std::string& source, const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors) {
  if (names.size() != tensors.size())
    throw std::invalid_argument("names and tensors differ in length (" + std::to_string(names.size()) + " and " + std::to_string(tensors.size()) + ")");
  torch::jit::Module m("CompnetPlan");
  for (size_t k = 0; k < names.size(); ++k) m.register_parameter(names[k], tensors[k].detach().clone(), /*is_buffer=*/false);
  m.define(source);
  m.eval();
  auto frozen = torch::jit::freeze(m);
  return torch::jit::optimize_for_inference(frozen);
}

at::Tensor jitForward(torch::jit::Module& m, const std::vector<at::Tensor>& inputs) {
  at::NoGradGuard ng;
  std::vector<c10::IValue> values(inputs.begin(), inputs.end());
  return m.forward(values).toTensor();
}

// ---- TorchScript archives (export) ----------------------------------------------------------------
// Exported modules are neither frozen nor optimised for inference: their weights stay ordinary
// parameters (visible to model.parameters() in PyTorch) and the graph holds no oneDNN-specific
// ops, so the archive runs wherever libtorch does.

std::string jitArchive(const std::string& source, const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors,
                       const std::vector<std::string>& bufferNames, const std::vector<at::Tensor>& buffers, const std::string& meta) {
  if (names.size() != tensors.size())
    throw std::invalid_argument("names and tensors differ in length (" + std::to_string(names.size()) + " and " + std::to_string(tensors.size()) + ")");
  if (bufferNames.size() != buffers.size())
    throw std::invalid_argument("bufferNames and buffers differ in length (" + std::to_string(bufferNames.size()) + " and " + std::to_string(buffers.size()) + ")");
  torch::jit::Module m("CompnetExport");
  for (size_t k = 0; k < names.size(); ++k) m.register_parameter(names[k], tensors[k].detach().clone(), /*is_buffer=*/false);
  for (size_t k = 0; k < bufferNames.size(); ++k) m.register_buffer(bufferNames[k], buffers[k].detach().clone());
  m.define(source);
  m.eval();
  std::ostringstream os;
  m.save(os, torch::jit::ExtraFilesMap{{"compnet.json", meta}});
  return os.str();
}

torch::jit::Module jitLoad(Napi::Buffer<char> archive) {
  std::istringstream is(std::string(archive.Data(), archive.Length()));
  auto m = torch::jit::load(is, at::Device(at::kCPU));
  m.eval();
  return m;
}

// ---- optimizers (libtorch's own) ----------------------------------------------------------------

// One libtorch optimizer over compnet's parameter groups: `options(group)` makes each group's
// options (its lr and weight decay set), the optimizer's defaults are the first group's.
template <typename Opt, typename Options, typename MakeOptions>
std::unique_ptr<torch::optim::Optimizer> optimizerOver(const std::vector<ParamGroup>& groups, const MakeOptions& options) {
  std::vector<torch::optim::OptimizerParamGroup> pg;
  for (const auto& g : groups) pg.emplace_back(g.params, std::make_unique<Options>(options(g)));
  const ParamGroup fallback{{}, 1e-3, 0};
  return std::make_unique<Opt>(pg, options(groups.empty() ? fallback : groups[0]));
}

std::unique_ptr<torch::optim::Optimizer> adam(const std::vector<ParamGroup>& groups, const AdamOptions& o) {
  namespace optim = torch::optim;
  if (o.decoupled)
    return optimizerOver<optim::AdamW, optim::AdamWOptions>(
        groups, [&](const ParamGroup& g) { return optim::AdamWOptions(g.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(g.weightDecay); });
  return optimizerOver<optim::Adam, optim::AdamOptions>(
      groups, [&](const ParamGroup& g) { return optim::AdamOptions(g.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(g.weightDecay); });
}

std::unique_ptr<torch::optim::Optimizer> sgd(const std::vector<ParamGroup>& groups, const SgdOptions& o) {
  namespace optim = torch::optim;
  return optimizerOver<optim::SGD, optim::SGDOptions>(
      groups, [&](const ParamGroup& g) { return optim::SGDOptions(g.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(g.weightDecay); });
}

std::unique_ptr<torch::optim::Optimizer> rmsprop(const std::vector<ParamGroup>& groups, const RmspropOptions& o) {
  namespace optim = torch::optim;
  return optimizerOver<optim::RMSprop, optim::RMSpropOptions>(groups, [&](const ParamGroup& g) {
    return optim::RMSpropOptions(g.lr).alpha(o.alpha).eps(o.eps).weight_decay(g.weightDecay).momentum(0).centered(false);
  });
}

void optSetLr(torch::optim::Optimizer& opt, int64_t group, double lr) {
  auto& groups = opt.param_groups();
  if (group < 0 || static_cast<size_t>(group) >= groups.size())
    throw std::invalid_argument("optimizer has no parameter group " + std::to_string(group) + " (it has " + std::to_string(groups.size()) + ")");
  groups[group].options().set_lr(lr);
}

std::string optSave(torch::optim::Optimizer& opt) {
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  std::ostringstream os;
  archive.save_to(os);
  return os.str();
}

void optLoad(torch::optim::Optimizer& opt, Napi::Buffer<char> state) {
  torch::serialize::InputArchive archive;
  archive.load_from(state.Data(), state.Length());
  opt.load(archive);
}

// Frozen TorchScript plans reuse their output buffers across batch sizes, and libtorch 1.13 warns
// on every such resize (a deprecation notice for behaviour it still performs correctly): one line
// per op per batch, thousands in an evaluation. Drop that notice; pass every other warning on.
class QuietResizeWarnings : public c10::WarningHandler {
 public:
  void process(const c10::SourceLocation& where, const std::string& msg, const bool verbatim) override {
    if (msg.find("was resized since it had shape") != std::string::npos) return;
    c10::WarningHandler::process(where, msg, verbatim);
  }
};
QuietResizeWarnings g_quiet_resize;

}  // namespace compnet::binding

#include "generated/op_binding.h"

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  c10::Warning::set_warning_handler(&compnet::binding::g_quiet_resize);
  compnet::binding::registerOps(env, exports);
  return exports;
}

NODE_API_MODULE(compnet_torch, Init)
